"""The gateway process: server, workers and supervisor, listeners, reload, registry feed."""
