"""The HTTP proxy on the native socket lane: the same proxy, fewer trips through Python.

Theory of operation. The C extension in `gateway/http/native/` owns a
plain-HTTP listener's sockets (the header comment of `native/lane.c` is its
contract). Each client connection is a `LaneProxy`, which *is*
`http.proxy.HttpProxy`: routing, the
filter chain, the upstream head, retries, timeouts, breakers, outlier
reports, telemetry and every answer the gateway makes are HttpProxy's code,
run unchanged. The lane changes only how bytes reach it and leave it:

- a request head of the plain shape arrives parsed, as one `lane_request`
  call (no httptools callbacks); any other head, and everything after it on
  that connection, arrives as `data_received` and takes RequestCore's path;
- a try of a request without a body, to a plain-HTTP endpoint, runs on a
  native pooled socket (`_take`): the upstream head written from C, the
  response head given back as `lane_head` (HttpProxy's own
  `on_response_head` decides: outlier report, retry on status, the client's
  head and framing), the body relayed and re-framed in C, the end reported
  as `lane_complete` or `lane_failed`. Other tries (a body, an upgrade, TLS
  to the endpoint, a hostname endpoint, a full connection pool) use the
  event loop's upstream connections as before.

The exchange's `conn` during a native try is the connection's `LaneTry`, an
`UpstreamConnection` whose `close` drops the native socket, so every path of
HttpProxy that ends a try (timeout, retry, client gone) works unchanged.
Native upstream sockets count in their `EndpointPool.total` (the circuit
breaker's `max_connections`); the lane reports each one's closing to
`PoolSet.lane_closed`.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.http import head as hh
from gateway.http.exchange import Cancellable, Exchange
from gateway.http.proxy import HttpProxy
from gateway.upstream.connection import UpstreamConnection
from gateway.upstream.failure import (
    CircuitOpen,
    ConnectFailure,
    UpstreamProtocolError,
    UpstreamReset,
)
from gateway.upstream.pool import EndpointPool

CONNECT_FAILURE: Final = 0
RESET: Final = 1
PROTOCOL_ERROR: Final = 2
"""`lane_failed` causes, as `native/lane.h` numbers them."""


class LaneTry(UpstreamConnection):
    """A client connection's current native try, as HttpProxy sees an upstream connection.

    One per client connection, made by its first native try and reused. C sets
    nothing on it: `LaneProxy.lane_head` writes `lines` and `has_length` before
    handing it to `on_response_head`.
    """

    __slots__ = ("connect_timer", "endpoint_pool", "lane")

    def __init__(self, pool: EndpointPool, lane: Any) -> None:
        super().__init__(pool)
        self.endpoint_pool = pool
        """The pool of the current try's endpoint (`pool`, typed as what it is)."""
        self.lane = lane
        """The client connection's native transport (`native_lane.Transport`)."""
        self.connect_timer: Cancellable | None = None
        """The connect timeout of a try on a new socket, until it connects or ends."""

    def connected(self) -> None:
        """The try got an answer or failed: its connect timeout is over."""
        timer = self.connect_timer
        if timer is not None:
            self.connect_timer = None
            timer.cancel()

    def close(self) -> None:
        """Drop the native socket of the try (timeout, retry, client gone)."""
        self.connected()
        self.lane.cancel()


class LaneProxy(HttpProxy):
    """A client connection on the native lane; see the module docstring."""

    __slots__ = ("lane_try", "native")

    def connection_made(self, transport: Any) -> None:
        self.native: Any = transport
        """The native transport (also `transport`, typed as the asyncio subset): the lane
        calls this first, so the two lane attributes are set here, not in `__init__`."""
        self.lane_try: LaneTry | None = None
        super().connection_made(transport)

    # --- from the lane: a parsed request head ----------------------------------
    def lane_request(
        self,
        method: bytes,
        path: bytes,
        query: bytes,
        host: bytes,
        headers: list[tuple[bytes, bytes]],
        origin: bytes,
        keep_alive: bool,
    ) -> None:
        """A plain HTTP/1.1 request head without a body (what RequestCore would make of it)."""
        if host != self.valid_host:
            try:
                hh.check_host(host)
            except hh.HeadError as err:
                self._refuse(err)
                return
            self.valid_host = host
        ex = Exchange(method, path, query, "1.1", host, headers, b"", None)
        if origin:
            ex.origin = origin
        ex.keep_alive = keep_alive and not self.closing
        if not ex.keep_alive:
            self.closing = True
        limit = self.body_limit
        if limit >= 0:
            ex.body_limit = limit
        self.active = ex
        self._start(ex)

    # --- tries on native sockets -------------------------------------------------
    def _take(self, ex: Exchange, pool: EndpointPool) -> None:
        native = self.native
        lane_id = pool.lane_id
        if ex.body or ex.chunked or not ex.body_done or ex.upgrade or pool.ssl is not None:
            if pool.total >= pool.max_connections and not pool.idle:
                lane = self.ctx.pools.lane if self.ctx.pools is not None else None
                if lane is not None:  # the event loop's path cannot use an idle native socket
                    lane.close_one_idle(lane_id)
            super()._take(ex, pool)
            return
        if native.idle(lane_id) == 0 and pool.total >= pool.max_connections:
            ex.connecting = self.loop.create_task(self._wait_slot(ex, pool))
            return
        endpoint = ex.endpoint
        assert endpoint is not None
        head = b"".join((ex.line, b"Host: ", ex.fixed_host or pool.host_header, b"\r\n", ex.head))
        started = native.forward(
            lane_id, endpoint.address, endpoint.port, head, ex.method == b"HEAD"
        )
        if started < 0:  # not an IP literal: the event loop resolves it
            super()._take(ex, pool)
            return
        conn = self.lane_try
        if conn is None:
            conn = self.lane_try = LaneTry(pool, native)
        else:
            conn.pool = conn.endpoint_pool = pool
        ex.conn = conn
        ex.reused = started == 1
        if started == 0:
            pool.total += 1
            rule = ex.rule
            assert rule is not None
            conn.connect_timer = self.loop.call_later(
                rule.timeouts.connect_s, self._connect_timed_out, ex
            )
        in_flight = self.ctx.state.in_flight
        key = endpoint.key
        in_flight[key] = in_flight.get(key, 0) + 1

    async def _wait_slot(self, ex: Exchange, pool: EndpointPool) -> None:
        """At the breaker's `max_connections`: wait for a socket to close or go idle,
        then take the try again (`CircuitOpen` answers as the event loop's path does)."""
        rule = ex.rule
        assert rule is not None
        try:
            await pool.wait_slot(rule.timeouts.connect_s)
        except CircuitOpen:
            ex.connecting = None
            if ex is self.active and not ex.done:
                self.ctx.breakers.pending_overflow(pool.backend.name)
                self._failed(ex, CircuitOpen(f"{pool.endpoint.key}: no connection slot"))
            return
        ex.connecting = None
        if ex is self.active and not ex.done:
            self._take(ex, pool)

    def _connect_timed_out(self, ex: Exchange) -> None:
        conn = self.lane_try
        if conn is None or ex is not self.active or ex.done or ex.conn is not conn:
            return
        conn.connect_timer = None
        if self.native.connecting:
            self.native.cancel()
            self.lane_failed(CONNECT_FAILURE)

    # --- from the lane: the try's response ----------------------------------------
    def lane_head(
        self, status: int, lines: list[bytes], has_length: bool
    ) -> tuple[bytes, bool] | None:
        """The response head: the client's head and whether its body goes chunked, or None
        when HttpProxy decided otherwise (a retry on this status)."""
        conn = self.lane_try
        ex = self.active
        if conn is None or ex is None or ex.conn is not conn:
            return None
        conn.connected()
        plan = ex.plan
        if plan is not None and plan.response_drop:
            lines = _dropped(lines, plan.response_drop)
        conn.lines = lines
        conn.has_length = has_length
        self.on_response_head(conn, status)
        if ex.conn is not conn or not ex.responded:
            return None
        out = ex.out
        ex.out = b""
        chunked = ex.chunked_out
        ex.chunked_out = False  # the lane frames the body, and its last chunk
        return out, chunked

    def lane_interim(self, status: int, lines: list[bytes]) -> None:
        conn = self.lane_try
        ex = self.active
        if conn is not None and ex is not None:
            plan = ex.plan
            if plan is not None and plan.response_drop:
                lines = _dropped(lines, plan.response_drop)
            conn.lines = lines
            self.on_interim(conn, status)

    def lane_complete(self, nbytes: int) -> None:
        conn = self.lane_try
        ex = self.active
        if conn is None or ex is None or ex.conn is not conn:
            return
        ex.bytes_out += nbytes
        if conn.endpoint_pool.waiters:
            conn.endpoint_pool.wake_all()  # its socket may be idle now
        self.on_response_complete()

    def lane_failed(self, cause: int) -> None:
        ex = self.active
        conn = self.lane_try
        if conn is None or ex is None or ex.done or ex.conn is not conn:
            return
        conn.connected()
        endpoint = ex.endpoint
        assert endpoint is not None
        if cause == CONNECT_FAILURE:
            self.ctx.observer.upstream_connect_failed(endpoint.cluster, endpoint.key)
            self.upstream_failed(ConnectFailure(f"{endpoint.key}: connect failed"))
        elif cause == RESET:
            self.upstream_failed(UpstreamReset(f"{endpoint.key}: connection closed"))
        else:
            self.upstream_failed(UpstreamProtocolError(f"{endpoint.key}: malformed response"))

    # --- the end of an exchange -------------------------------------------------
    def _finish(self, ex: Exchange, *, close: bool, abort: bool = False) -> None:
        super()._finish(ex, close=close, abort=abort)
        if self.active is None:
            self.native.request_done()

    def shed(self) -> bool:
        """Also drop the try object (made again by the next native try)."""
        if super().shed():
            self.lane_try = None
            return True
        return False


def _dropped(lines: list[bytes], drop: frozenset[bytes]) -> list[bytes]:
    """The response header lines a rule keeps. Content-Length always stays: it frames
    the body (the event loop's response core never drops it either)."""
    return [
        line
        for line in lines
        if (name := line[: line.index(b":")].lower()) not in drop or name == b"content-length"
    ]
