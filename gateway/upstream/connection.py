"""One keep-alive HTTP/1.1 connection to an endpoint: the response side of the proxy.

`UpstreamConnection` is an asyncio Protocol that parses responses with
httptools and hands every event to its current *sink* (the client-side
exchange that holds it): `on_response_head`, `on_response_body`,
`on_response_complete`, `upstream_failed`, `tunnel_data`, and the two flow
control calls `upstream_pause_writing`/`upstream_resume_writing` (which pause
and resume reading from the client: backpressure from upstream to client).
Hop-by-hop response headers are dropped as they arrive, and so are the names
the rule's response header modifier removes or sets (`drop`, given at bind);
the others are kept as ready `Name: value\r\n` lines (`lines`), so the
proxy joins the response head without touching each header again. Its pool takes it back
after a complete response; the connection knows the pool only as a
`ConnectionPool` (the two calls it makes), so this module does not import
`gateway.upstream.pool`, which imports it.

Failures are reported as the types of `gateway.upstream.failure`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

import httptools

from gateway.http.head import HOP_BY_HOP, connection_tokens
from gateway.transport import Transport, unconnected
from gateway.upstream.failure import (
    UpstreamFailure,
    UpstreamProtocolError,
    UpstreamReset,
)


class ConnectionPool(Protocol):
    """What a connection asks of the pool it belongs to (`upstream.pool.EndpointPool`).

    `EndpointPool` names it as a base so that compiled code calls it natively.
    """

    __slots__ = ()

    host_header: bytes
    """The upstream Host value when the client's is not preserved."""

    def release(self, conn: UpstreamConnection) -> None:
        """Take `conn` back after a response read to its end (idle, or closed if not wanted)."""
        ...

    def forget(self, conn: UpstreamConnection) -> None:
        """`conn` closed (its `connection_lost`, once): free its slot."""
        ...


class ResponseSink(Protocol):
    """What an upstream connection reports to while it serves one request."""

    def on_response_head(self, conn: UpstreamConnection, status: int) -> None: ...
    def on_response_body(self, data: bytes) -> None: ...
    def on_response_complete(self) -> None: ...
    def upstream_failed(self, failure: UpstreamFailure) -> None: ...
    def tunnel_data(self, data: bytes) -> None: ...
    def flush_head(self) -> None: ...
    def upstream_pause_writing(self) -> None: ...
    def upstream_resume_writing(self) -> None: ...


_PLAIN_CONNECTION: Final = frozenset({b"keep-alive", b"close", b"upgrade"})
"""Connection values naming only hop-by-hop headers, which are dropped anyway."""


_LOWER_PLAIN: Final = frozenset(
    {
        b"server",
        b"date",
        b"content-type",
        b"cache-control",
        b"last-modified",
        b"etag",
        b"expires",
        b"vary",
        b"set-cookie",
        b"location",
        b"accept-ranges",
        b"content-encoding",
        b"content-length",
    }
)
"""`_PLAIN_NAMES` and Content-Length, lowercased: a drop set naming none of them
costs nothing on their fast path (`bind`)."""

_PLAIN_NAMES: Final = frozenset(
    {
        b"Server",
        b"Date",
        b"Content-Type",
        b"Cache-Control",
        b"Last-Modified",
        b"ETag",
        b"Expires",
        b"Vary",
        b"Set-Cookie",
        b"Location",
        b"Accept-Ranges",
        b"Content-Encoding",
    }
)
"""Header names, exactly as usually spelled, that are forwarded as they are: no
lowercasing or hop-by-hop check for them (not Content-Length, which is read)."""


class UpstreamConnection:
    """One keep-alive HTTP/1.1 connection to an endpoint (an asyncio protocol by duck
    typing, as the event loops take it: no base class, so mypyc can compile it)."""

    __slots__ = (
        "chunked",
        "closed",
        "drop",
        "drop_plain",
        "dropped",
        "feed",
        "got_head",
        "has_length",
        "head_only",
        "idle_since",
        "keep_alive",
        "lines",
        "parser",
        "pool",
        "send",
        "sink",
        "status",
        "transport",
        "tunnel",
        "upgrade",
        "upgraded",
    )

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.transport: Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.feed: Callable[[bytes], None] = self.parser.feed_data
        self.send: Callable[[bytes], object] = unconnected
        """`transport.write`, bound once (the proxy writes each request head with it)."""
        self.sink: ResponseSink | None = None
        self.lines: list[bytes] = []
        self.drop: frozenset[bytes] = frozenset()
        """Lowercased names not to keep (the rule's response header modifier), set at bind."""
        self.drop_plain = False
        """Whether `drop` names a header of the `_PLAIN_NAMES` fast path (rare)."""
        self.dropped: frozenset[bytes] | None = None
        self.upgrade = b""
        self.status = 0
        self.chunked = False
        self.has_length = False
        """A Content-Length came (llhttp has validated it): the body is length-delimited."""
        self.keep_alive = True
        self.got_head = False
        self.head_only = False
        self.upgraded = False
        self.tunnel = False
        self.closed = False
        self.idle_since = 0.0

    # --- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.send = transport.write

    def data_received(self, data: bytes) -> None:
        if self.tunnel:
            if self.sink is not None:
                self.sink.tunnel_data(data)
            return
        try:
            self.feed(data)
            if self.sink is not None:
                self.sink.flush_head()
        except httptools.HttpParserUpgrade as upgrade:
            self.tunnel = True
            rest = data[upgrade.args[0] :]
            if rest and self.sink is not None:
                self.sink.tunnel_data(rest)
        except httptools.HttpParserError:
            self.fail(UpstreamProtocolError("unparsable response"))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        sink = self.sink
        if sink is None:
            return
        self.sink = None
        if self.tunnel or (self.got_head and not self.chunked and not self.has_length):
            sink.on_response_complete()  # close-delimited body (or tunnel) ends here
        else:
            sink.upstream_failed(UpstreamReset("closed before the response ended"))

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_pause_writing()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_resume_writing()

    # --- httptools callbacks ----------------------------------------------
    def on_message_begin(self) -> None:
        self.lines = []
        if self.dropped is not None:
            self.dropped = None
        if self.upgrade:
            self.upgrade = b""
        self.chunked = False
        self.has_length = False
        self.got_head = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name in _PLAIN_NAMES:  # common end-to-end headers as servers spell them
            if not self.drop_plain or name.lower() not in self.drop:
                self.lines.append(name + b": " + value + b"\r\n")
            return
        if name == b"Content-Length":
            self.has_length = True
            self.lines.append(name + b": " + value + b"\r\n")
            return
        if name == b"Connection" and value == b"keep-alive":
            return  # hop-by-hop, names no other header
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"transfer-encoding":
                self.chunked = value.strip().lower().endswith(b"chunked")
            elif lname == b"connection":
                if value.lower() not in _PLAIN_CONNECTION:
                    tokens = frozenset(connection_tokens(value)) - HOP_BY_HOP
                    self.dropped = (self.dropped or frozenset()) | tokens
            elif lname == b"upgrade":
                self.upgrade = value
            return
        if lname == b"content-length":
            self.has_length = True
        elif lname in self.drop:
            return
        self.lines.append(name + b": " + value + b"\r\n")

    def head_lines(self) -> list[bytes]:
        """The response's end-to-end header lines, minus what its Connection header named
        (known only once the head is complete; `lines` when it named nothing)."""
        if not self.dropped:
            return self.lines
        drop = self.dropped - {b"content-length"}
        return [line for line in self.lines if line[: line.index(b":")].lower() not in drop]

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # interim response: the proxy answers 100-continue itself
        self.status = status
        self.got_head = True
        self.keep_alive = self.parser.should_keep_alive()
        self.upgraded = status == 101
        if self.sink is not None:
            self.sink.on_response_head(self, status)
        if self.head_only and self.sink is not None and not self.upgraded:
            self._complete()

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.on_response_body(body)

    def on_message_complete(self) -> None:
        if not self.got_head or self.upgraded:
            return
        if self.head_only:
            # The response to HEAD ended at its head; httptools would read a body
            # for its Content-Length, so this connection cannot be parsed further.
            self.keep_alive = False
            return
        sink = self.sink
        if sink is None or not self.keep_alive or self.closed:
            self._complete()
            return
        self.sink = None
        self.got_head = False
        self.pool.release(self)
        sink.on_response_complete()

    # --- used by the proxy ------------------------------------------------
    def _complete(self) -> None:
        sink = self.sink
        self.sink = None
        self.got_head = False
        if self.head_only:
            self.close()
        elif self.keep_alive and not self.closed:
            self.pool.release(self)
        else:
            self.close()
        if sink is not None:
            sink.on_response_complete()

    def fail(self, failure: UpstreamFailure) -> None:
        sink = self.sink
        self.sink = None
        self.close()
        if sink is not None:
            sink.upstream_failed(failure)

    def close(self) -> None:
        """Close without reporting to the sink; the pool forgets it on connection_lost."""
        if not self.closed:
            self.closed = True
            self.sink = None
            if self.transport is not None:
                self.transport.abort()

    def bind(
        self, sink: ResponseSink, *, head_only: bool, drop: frozenset[bytes] = frozenset()
    ) -> None:
        """Serve `sink`'s request; `drop`: response header names its rule removes or sets."""
        self.sink = sink
        self.head_only = head_only
        self.got_head = False
        if drop is not self.drop:
            self.drop_names(drop)

    def drop_names(self, drop: frozenset[bytes]) -> None:
        """Leave out of the next responses the header names in `drop` (lowercased)."""
        self.drop = drop
        self.drop_plain = not drop.isdisjoint(_LOWER_PLAIN)
