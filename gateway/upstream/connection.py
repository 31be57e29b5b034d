"""One keep-alive HTTP/1.1 connection to an endpoint: the asyncio shell of `ResponseCore`.

`gateway.upstream.response_core.ResponseCore` parses the responses and keeps the
framing state without I/O; this class adds what touches the world: the
transport, the pool the connection belongs to, and acting on what the core
returns (give the connection back to the pool or close it, then tell the
sink the response completed or failed). Flow control passes through:
`pause_writing`/`resume_writing` become the sink's
`upstream_pause_writing`/`upstream_resume_writing` (which pause and resume
reading from the client: backpressure from upstream to client).
The connection knows the pool only as a `ConnectionPool` (the two calls it
makes), so this module does not import `gateway.upstream.pool`, which imports it.

Failures are reported as the types of `gateway.upstream.failure`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

from gateway.transport import Transport, unconnected
from gateway.upstream.response_core import ResponseAction, ResponseCore, ResponseSink

__all__ = ["ConnectionPool", "ResponseSink", "UpstreamConnection"]

_REUSE: Final = int(ResponseAction.REUSE)
_FAIL: Final = int(ResponseAction.FAIL)
"""`ResponseAction.REUSE` and `.FAIL` as plain ints (compiled code compares them natively)."""


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


class UpstreamConnection(ResponseCore):
    """One keep-alive HTTP/1.1 connection to an endpoint (an asyncio protocol by duck
    typing, as the event loops take it). It derives from its core rather than
    holding one so that mypyc compiles the pair into one native object: the
    parser's callbacks and the shell's acting cost no extra object or call."""

    __slots__ = ("closed", "idle_since", "pool", "send", "transport")

    def __init__(self, pool: ConnectionPool) -> None:
        super().__init__()
        self.pool = pool
        self.transport: Transport | None = None
        self.send: Callable[[bytes], object] = unconnected
        """`transport.write`, bound once (the proxy writes each request head with it)."""
        self.closed = False
        self.idle_since = 0.0

    # --- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.send = transport.write

    def data_received(self, data: bytes) -> None:
        action = self.receive(data)
        if action:
            self._act(action)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.sink is None:
            self.closed_by_shell()
            return
        action = self.end_of_stream()
        if action:
            self._act(action)
        else:
            self.closed_by_shell()

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_pause_writing()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_resume_writing()

    # --- acting on the core -------------------------------------------------
    def _act(self, action: int) -> None:
        """Do what the core asked (`ResponseAction`), then tell the sink: the pool
        first, so that a pipelined request the sink starts can take this connection."""
        sink = self.sink
        self.sink = None
        if action == _REUSE and not self.closed:
            self.pool.release(self)
        else:
            self.close()
        if sink is None:
            return
        if action == _FAIL:
            failure = self.failure
            assert failure is not None
            sink.upstream_failed(failure)
        else:
            sink.on_response_complete()

    def close(self) -> None:
        """Close without reporting to the sink; the pool forgets it on connection_lost."""
        self.closed_by_shell()
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
