"""HTTP/1.1: the client-side proxy, its exchange, head rules and filters."""
