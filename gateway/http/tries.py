"""Tries of an HTTP exchange: bind an upstream connection, time out, retry.

`TryRunner` is mixed into `http.proxy.HttpProxy`. A try takes an idle pooled
connection synchronously (a Task only when a new connection must be opened),
writes the request head with whatever body arrived, and arms the exchange's
deadline in the loop's `DeadlineWatch`. A try that fails before the response
head is retried when `retry_policy.retry_allowed` says so (after a jittered
backoff, on another endpoint of the backend when there is one), once more on
a fresh connection when a reused keep-alive socket turned out stale, or
answered with the error otherwise.
"""

from __future__ import annotations

from typing import Final

from gateway.http import head as hh
from gateway.http.exchange import BODY_BUFFER_LIMIT, BUFFER, Exchange
from gateway.http.request import RequestReader
from gateway.outcome import ErrorKind, ResponseFlag, flag_of
from gateway.routing.endpoints import Endpoint
from gateway.upstream.failure import CircuitOpen, UpstreamFailure, UpstreamTimeout
from gateway.upstream.outlier import Outcome
from gateway.upstream.pool import EndpointPool, UpstreamConnection
from gateway.upstream.retry_policy import IDEMPOTENT_METHODS, retry_allowed, retry_delay_s

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_SAME_ENDPOINT_OK: Final = frozenset({"upstream_reset", "gateway_status", "server_status"})
_ENDPOINT_FAULTS: Final = frozenset(
    {"upstream_connect_failure", "upstream_reset", "upstream_timeout", "upstream_protocol_error"}
)
"""Try failures outlier detection counts against the endpoint (answers are counted
where they arrive, `ResponseRelay.on_response_head`; an open circuit is ours)."""


class TryRunner(RequestReader):
    """The try layer of `HttpProxy` (see `RequestReader` for the chain)."""

    __slots__ = ()

    def _try(self, ex: Exchange, endpoint: Endpoint) -> None:
        ex.endpoint = endpoint
        first = not ex.attempts
        ex.attempts += 1
        pools = self.pools
        decision = ex.decision
        assert decision is not None
        backend = decision.backend
        assert backend is not None
        if first and not self.ctx.breakers.enter_request(
            backend.name, backend.circuit_breaker.max_requests
        ):
            ex.flags = ResponseFlag.UO
            self._error(ex, ErrorKind.OVERFLOW)  # `_finish` leaves: every first try entered
            return
        pool = pools.pools.get(endpoint.key)
        if pool is None or pool.backend is not backend:
            pool = pools.pool(endpoint, backend)
        at = ex.deadline
        plan = ex.plan
        assert plan is not None
        per_try = plan.per_try_s
        if per_try:
            at = min(at, self.now() + per_try)
        ex.owner = self
        self.watch.add(ex, at)
        self._take(ex, pool)

    def _take(self, ex: Exchange, pool: EndpointPool) -> None:
        """Bind an idle pooled connection of `pool` to the try, or start opening one
        (`http.lane_proxy.LaneProxy` runs bodiless tries on native sockets instead)."""
        conn = pool.take_idle()
        if conn is not None:
            ex.reused = True
            self._bind(ex, conn)
            return
        ex.reused = False
        ex.connecting = self.loop.create_task(self._connect(ex, pool))

    async def _connect(self, ex: Exchange, pool: EndpointPool) -> None:
        rule = ex.rule
        assert rule is not None
        try:
            conn = await pool.connect(rule.timeouts.connect_s)
        except UpstreamFailure as failure:
            ex.connecting = None
            if ex is self.active and not ex.done:
                endpoint = ex.endpoint
                assert endpoint is not None
                if isinstance(failure, CircuitOpen):
                    self.ctx.breakers.pending_overflow(pool.backend.name)
                else:
                    self.ctx.observer.upstream_connect_failed(endpoint.cluster, endpoint.key)
                self._failed(ex, failure)
            return
        ex.connecting = None
        if ex is not self.active or ex.done:
            pool.release(conn)
        else:
            self._bind(ex, conn)

    def _bind(self, ex: Exchange, conn: UpstreamConnection) -> None:
        ex.conn = conn
        plan = ex.plan
        assert plan is not None
        head_only = ex.method == b"HEAD"
        conn.start(self, head_only=head_only, drop=plan.response_drop, upgrade=bool(ex.upgrade))  # type: ignore[arg-type]
        endpoint = ex.endpoint
        assert endpoint is not None
        key = endpoint.key
        in_flight = self.ctx.state.in_flight
        in_flight[key] = in_flight.get(key, 0) + 1
        host = ex.fixed_host or conn.pool.host_header
        body = ex.replay if ex.replay is not None else ex.body
        transport = conn.transport
        assert transport is not None
        if not body and not ex.chunked:  # the common case: one head, one write
            conn.send(b"".join((ex.line, b"Host: ", host, b"\r\n", ex.head)))
        else:
            out = [ex.line, b"Host: ", host, b"\r\n", ex.head]
            if body:
                ex.body_sent = True
                for piece in body:
                    if ex.chunked:
                        out.extend(hh.chunk(piece))
                    else:
                        out.append(piece)
                if ex.body_done and not ex.upgrade and ex.bytes_in <= BODY_BUFFER_LIMIT:
                    ex.replay = body
            if ex.chunked and ex.body_done and not ex.upgrade:
                out.append(hh.LAST_CHUNK)
            ex.body = None
            transport.write(b"".join(out))
        if self.write_paused:
            transport.pause_reading()
        if ex.expect and not ex.body_done and not ex.bytes_in:
            self.transport.write(_CONTINUE)
        if self.paused & BUFFER:
            self._resume(BUFFER)

    def timed_out(self, ex: Exchange) -> None:
        """`ExchangeOwner.timed_out`: the try deadline passed before a response head."""
        if ex.done or ex.responded or ex is not self.active:
            return
        whole = self.now() >= ex.deadline - 1e-3
        self._drop_upstream(ex)
        if whole and not ex.body_done:
            # the client is still sending its body (a slow POST): its fault, never the
            # endpoint's, or a slow client could get healthy endpoints ejected
            self._error(ex, "request_body_timeout")
        elif whole:
            endpoint = ex.endpoint
            decision = ex.decision
            if endpoint is not None and decision is not None and decision.backend is not None:
                self.ctx.outliers.failure(
                    decision.backend,
                    endpoint.key,
                    Outcome.GATEWAY_FAILURE,
                    self.ctx.state,
                    self.loop.time(),
                )
            self._error(ex, "upstream_timeout")
        else:
            self._failed(ex, _TIMEOUT)

    def _drop_upstream(self, ex: Exchange) -> None:
        if ex.connecting is not None:
            ex.connecting.cancel()
            ex.connecting = None
        conn = ex.conn
        if conn is not None:
            ex.conn = None
            conn.close()
            self._uncount(ex)

    def _uncount(self, ex: Exchange) -> None:
        endpoint = ex.endpoint
        assert endpoint is not None
        key = endpoint.key
        in_flight = self.ctx.state.in_flight
        left = in_flight.get(key, 1) - 1
        if left > 0:
            in_flight[key] = left
        else:
            in_flight.pop(key, None)

    def _failed(self, ex: Exchange, failure: UpstreamFailure) -> None:
        """A try failed before the response head: retry elsewhere or answer the error."""
        pools = self.pools
        self.watch.discard(ex)
        current, table, decision, rule = ex.endpoint, ex.table, ex.decision, ex.rule
        assert current is not None and table is not None
        assert decision is not None and rule is not None
        ex.flags = flag_of(failure.cause) or ResponseFlag.UR
        if (
            failure.cause == "upstream_reset"
            and ex.reused
            and not ex.stale_retried
            and ex.method in IDEMPOTENT_METHODS
            and (not ex.body_sent or ex.replay is not None)
            and not ex.upgrade
        ):
            # a pooled connection the upstream closed as we reused it: once, on a fresh one
            ex.stale_retried = True
            self._try(ex, current)
            return
        if failure.cause in _ENDPOINT_FAULTS and decision.backend is not None:
            self.ctx.outliers.failure(
                decision.backend,
                current.key,
                Outcome.GATEWAY_FAILURE,
                self.ctx.state,
                self.loop.time(),
            )
        if retry_allowed(
            ex,
            failure.cause,
            pools,
            self.now(),
            endpoint_out=not self.ctx.state.available(current.key),
        ):
            tried = ex.tried if ex.tried is not None else set()
            tried.add(current.key)
            ex.tried = tried
            endpoint = table.retry_pick(decision, tried, self.ctx.state)
            if endpoint is None and failure.cause in _SAME_ENDPOINT_OK:
                endpoint = current  # a stale keep-alive socket: the same endpoint is fine
            backend = decision.backend
            if (
                endpoint is not None
                and backend is not None
                and not ex.retrying
                and not self.ctx.breakers.enter_retry(
                    backend.name, backend.circuit_breaker.max_retries
                )
            ):
                endpoint = None  # maxRetries reached: the try's own failure is the answer
            elif endpoint is not None and not ex.retrying:
                ex.retrying = True
                pools.active_retries += 1
            if endpoint is not None:
                ex.retries += 1
                same = endpoint.key == current.key
                delay = retry_delay_s(rule.retry, ex.retries, failure.cause, same)
                if delay <= 0.0:
                    self._try(ex, endpoint)
                else:
                    ex.timer = self.loop.call_later(delay, self._retry_now, ex, endpoint)
                return
        if ex.retries:
            ex.flags = ResponseFlag.URX  # retried, and the last try's failure is the answer
        self._error(ex, failure.cause)

    def _retry_now(self, ex: Exchange, endpoint: Endpoint) -> None:
        ex.timer = None
        if ex.done or ex is not self.active:
            return
        self._try(ex, endpoint)


_TIMEOUT: Final = UpstreamTimeout("per-try timeout")
