"""The request half of the HTTP proxy's shell: what the client core asks, done.

`RequestReader` derives from `http.core_client.RequestCore`, which parses
the client's bytes and keeps the framing state without I/O, and is the base
of the rest of the proxy (`TryRunner` -> `ResponseRelay` -> `HttpProxy`). It
holds the connection's shell state (context, transport, loop, deadline
watch) and the I/O the core's actions need: pausing and resuming the
transport by reason, and sending an exchange's held body bytes to its
upstream connection (`_flush_body`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.context import GatewayContext
from gateway.http import head as hh
from gateway.http.core_client import RequestCore
from gateway.http.deadline_watch import deadline_watch
from gateway.http.exchange import Exchange
from gateway.transport import UNCONNECTED, Transport, unconnected

if TYPE_CHECKING:
    from gateway.ops.observer import GatewayObserver
    from gateway.upstream.connection import UpstreamConnection
    from gateway.upstream.pool import PoolSet


class RequestReader(RequestCore):
    """The base of `HttpProxy`'s shell: the connection's state and flow control.

    `HttpProxy` is a single-inheritance chain, `RequestCore` -> `RequestReader`
    -> `TryRunner` -> `ResponseRelay` -> `HttpProxy`, one concern a layer, so
    that mypyc can compile it into one native class (`setup.py`). State that
    more than one layer reads is declared here; `_start` and `_error` are
    `HttpProxy`'s.
    """

    __slots__ = (
        "client_ip",
        "counter",
        "ctx",
        "first_request_idle_s",
        "idle_at",
        "listener",
        "loop",
        "now",
        "observe",
        "pools",
        "refusal",
        "send",
        "shed_listed",
        "swept_idle_at",
        "transport",
        "tunnel",
        "watch",
        "write_paused",
    )

    first_request_idle_s: float
    """How long a connection may stay open without sending a first request; after
    a request the matched rule's `timeouts.idle` applies (`gateway.firstRequestTimeout`)."""

    def __init__(self, ctx: GatewayContext, listener: str) -> None:
        settings = ctx.settings
        super().__init__(
            max_line=settings.max_request_line_bytes,
            max_headers=settings.max_headers,
            max_header_bytes=settings.max_header_bytes,
        )
        self.ctx = ctx
        pools = ctx.pools
        assert pools is not None, "upstream pools are made before listeners start"
        self.pools: PoolSet = pools
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.watch = deadline_watch(self.loop)
        self.first_request_idle_s = ctx.settings.first_request_timeout_s
        self.observe = False
        """Whether requests are reported to an observer at all: with `counter`
        set, only counted (`open_request`/`close_request`, unless the request
        carries a traceparent), else `begin`/`end` with a `RequestLog`."""
        self.counter: GatewayObserver | None = None
        """The observer when it only counts (metrics, no access log): called natively."""
        self.transport: Transport = UNCONNECTED
        self.now: Callable[[], float] = self.watch.now
        """Bound methods called per request are looked up once, here and in
        `connection_made` (`send`, `now`): a call by name costs a method lookup."""
        self.send: Callable[[bytes], object] = unconnected
        self.client_ip = ""
        self.write_paused = False
        self.tunnel: UpstreamConnection | None = None
        self.idle_at = 0.0
        self.swept_idle_at = 0.0
        self.shed_listed = False
        self.refusal: hh.HeadError | None = None

    def close_idle(self) -> None:
        """Close now if no request is being received or answered (drain, idle timeout).

        A connection idle past `idle_at` with half a request head is closed too:
        `parsing` is only set once a head is complete.
        """
        if self.active is None and self.parsing is None and not self.queue:
            self.closed()
            self.transport.close()

    def _start(self, ex: Exchange) -> None:
        raise NotImplementedError  # HttpProxy's

    def _error(self, ex: Exchange, cause: str) -> None:
        raise NotImplementedError  # HttpProxy's

    def _pause(self, reason: int) -> None:
        """Stop reading from the client for `reason` (a bit of `http.exchange`'s masks)."""
        if not self.paused:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        """Drop `reason`; reading resumes once no reason is left."""
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused:
                self.transport.resume_reading()

    def _flush_body(self) -> None:
        """`FLUSH`: send the active exchange's held body bytes (and its last chunk) upstream."""
        ex = self.active
        if ex is None:
            return
        conn = ex.conn
        if conn is None or conn.transport is None:
            return
        out = conn.transport
        body = ex.body
        if body:
            ex.body = None
            ex.replay = None
            ex.body_sent = True
            if ex.chunked:
                for piece in body:
                    out.writelines(hh.chunk(piece))
            else:
                out.write(body[0] if len(body) == 1 else b"".join(body))
        if ex.chunked and ex.body_done and not ex.upgrade:
            out.write(hh.LAST_CHUNK)
