"""The data plane: config model and compiler, routing core, proxies, admin API."""

from gateway.compiled import choose

choose()
