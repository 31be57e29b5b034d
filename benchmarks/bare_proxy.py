"""The ceiling for a Python HTTP/1.1 proxy on this machine: the least a proxy must do.

    python benchmarks/bare_proxy.py LISTEN_PORT UPSTREAM_PORT

One asyncio Protocol per client connection, httptools parsing both sides,
uvloop, one keep-alive upstream connection per client connection (opened on
the first request), TCP_NODELAY both ways. Per request it parses the head,
rebuilds it with one extra header (`X-Bench: 1`, the same rewrite every proxy
in `http.sh` does) and writes it in one call; the response head is rebuilt
the same way (hop-by-hop headers dropped) and written with the first body
bytes. No routing, no metrics, no pipelining, no retries, no request bodies
beyond what arrives in order: a benchmark yardstick, not a proxy to deploy.
Prints `ready <pid>` once listening.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import httptools
import uvloop

_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade"})
_REASON = {200: b"OK", 404: b"Not Found", 502: b"Bad Gateway"}


class Upstream(asyncio.Protocol):
    """The upstream side: parses responses and writes them to the client."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.parts: list[bytes] = []
        self.pending: bytes = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.pending:
            self.transport.write(self.pending)
            self.pending = b""

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)
        if self.parts:
            self.client.transport.write(b"".join(self.parts))
            self.parts.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()

    def on_message_begin(self) -> None:
        self.parts = [b""]

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in _HOP:
            self.parts.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self.parts[0] = b"HTTP/1.1 %d %s\r\n" % (status, _REASON.get(status, b"Status"))
        self.parts.append(b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)


class Client(asyncio.Protocol):
    """The client side: parses requests and forwards them over its upstream connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.upstream: Upstream | None = None
        self.connecting: asyncio.Task[object] | None = None
        self.url = b""
        self.parts: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.parts = [b""]

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in _HOP:
            self.parts.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        self.parts[0] = self.parser.get_method() + b" " + self.url + b" HTTP/1.1\r\n"
        self.parts.append(b"X-Bench: 1\r\n\r\n")
        head = b"".join(self.parts)
        up = self.upstream
        if up is None:
            up = self.upstream = Upstream(self)
            up.pending = head
            loop = asyncio.get_running_loop()
            self.connecting = loop.create_task(
                loop.create_connection(lambda: up, "127.0.0.1", self.upstream_port)
            )
        elif up.transport is None:
            up.pending += head
        else:
            up.transport.write(head)

    def on_body(self, body: bytes) -> None:
        up = self.upstream
        if up is not None and up.transport is not None:
            up.transport.write(body)
        elif up is not None:
            up.pending += body


async def serve(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Client(upstream_port), "127.0.0.1", port, reuse_address=True, backlog=4096
    )
    print(f"ready {os.getpid()}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2])))


if __name__ == "__main__":
    main()
