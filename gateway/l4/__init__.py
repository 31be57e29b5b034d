"""L4: TCP and TLS passthrough proxies, ClientHello parsing."""
