"""Connections to endpoints: pools, upstream connections, failures, retry policy."""
