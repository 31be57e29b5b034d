"""The response half of the HTTP proxy: upstream events → bytes to the client.

`ResponseRelay` is mixed into `http.proxy.HttpProxy`; it is the sink an
`upstream.UpstreamConnection` reports to. It re-frames the body for the
client (Content-Length kept; chunked or close-delimited upstream bodies go
chunked to HTTP/1.1 clients and close-delimited to HTTP/1.0 ones), removes
hop-by-hop headers, applies the rule's response header filters, splices an
upgraded (101) connection, finishes the exchange exactly once (telemetry
`end`, in-flight counts), and starts the next pipelined request.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from gateway.context import RequestLog
from gateway.http import head as hh
from gateway.http.exchange import DONE, PIPELINE, TUNNEL_WAIT, UPSTREAM, Exchange
from gateway.http.tries import TryRunner
from gateway.outcome import FLAG_TEXT, ErrorKind, ResponseFlag
from gateway.routing.decision import RequestFacts
from gateway.upstream.failure import StatusFailure, UpstreamFailure
from gateway.upstream.outlier import status_outcome
from gateway.upstream.retry_policy import RETRY_CLASSES, retry_allowed

if TYPE_CHECKING:
    from gateway.upstream.pool import UpstreamConnection

_GATEWAY_STATUSES: Final = frozenset({502, 503, 504})
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_STATUS_200: Final = hh.status_line(200)


LINGER_S: Final = 2.0
"""How long a connection answered mid-body is read and discarded before it is cut."""


class ResponseRelay(TryRunner):
    """The response layer of `HttpProxy`: the sink its upstream connections report to."""

    __slots__ = ()

    def on_response_head(self, conn: UpstreamConnection, status: int) -> None:
        ex = self.active
        if ex is None or ex.conn is not conn:
            conn.close()
            return
        rule, decision = ex.rule, ex.decision
        assert rule is not None and decision is not None
        endpoint = ex.endpoint
        assert endpoint is not None
        pools = self.pools
        pools.budget.answered += 1
        if status < 500:
            self.ctx.outliers.success(endpoint.key)
        elif decision.backend is not None:
            self.ctx.outliers.failure(
                decision.backend,
                endpoint.key,
                status_outcome(status),
                self.ctx.state,
                self.loop.time(),
            )
        retry = rule.retry
        if status >= 500 and not ex.upgrade and retry is not None:
            cause = (
                ErrorKind.GATEWAY_STATUS if status in _GATEWAY_STATUSES else ErrorKind.SERVER_STATUS
            )
            if RETRY_CLASSES[cause].intersection(retry.on) and retry_allowed(
                ex,
                cause,
                pools,
                self.now(),
                endpoint_out=not self.ctx.state.available(endpoint.key),
            ):
                self._drop_upstream(ex)
                self._failed(ex, StatusFailure(cause, status))
                return
        ex.responded = True
        ex.status = status
        self.watch.waiting.discard(ex)
        plan = ex.plan
        assert plan is not None
        out = [_STATUS_200 if status == 200 else hh.status_line(status)]
        out.extend(conn.head_lines() if conn.dropped else conn.lines)  # `drop` applied
        out.append(plan.response_lines)
        if ex.response_lines:  # written by request filters (CORS)
            out.append(ex.response_lines)
        out.append(ex.via)
        cookie = decision.set_cookie
        if cookie:
            out.append(b"Set-Cookie: " + cookie.encode("latin-1") + b"\r\n")
        close = not ex.keep_alive or (self.closing and not self.queue)
        if status == 101:
            out.append(b"Connection: upgrade\r\nUpgrade: " + conn.upgrade + b"\r\n")
            close = False
        elif ex.upgrade:
            close = True  # the client's parser is past an upgrade request: no more requests
        elif conn.has_length or ex.method == b"HEAD" or status in _NO_BODY_STATUSES or status < 200:
            pass
        elif ex.version == "1.1":
            out.append(b"Transfer-Encoding: chunked\r\n")
            ex.chunked_out = True
        else:
            close = True  # HTTP/1.0 client: the body ends when the connection closes
        if close:
            out.append(b"Connection: close\r\n")
        elif ex.version == "1.0":
            out.append(b"Connection: keep-alive\r\n")
        out.append(b"\r\n")
        ex.close_after = close
        head = b"".join(out)
        ex.bytes_out += len(head)
        if status == 101:
            self.transport.write(head)
            self._splice(ex, conn)
        else:
            ex.out = head  # written with the first body bytes: one write for small answers

    def on_interim(self, conn: UpstreamConnection, status: int) -> None:
        """Relay an interim response (103 Early Hints, ...) before the final one; never to
        an HTTP/1.0 client (RFC 9110 15.2), and 100 Continue is ours (`TryRunner._bind`)."""
        ex = self.active
        if ex is None or ex.conn is not conn or ex.version != "1.1" or ex.responded:
            return
        head = b"".join((hh.status_line(status), *conn.head_lines(), b"\r\n"))
        ex.bytes_out += len(head)
        self.transport.write(head)

    def _splice(self, ex: Exchange, conn: UpstreamConnection) -> None:
        self.tunnel = conn
        self.switched()
        early = ex.body
        ex.body = None
        if early and conn.transport is not None:
            conn.transport.write(b"".join(early))
        self._resume(TUNNEL_WAIT)

    def tunnel_data(self, data: bytes) -> None:
        ex = self.active
        if ex is not None:
            ex.bytes_out += len(data)
        self.transport.write(data)

    def on_response_body(self, data: bytes) -> None:
        ex = self.active
        if ex is None:
            return
        ex.bytes_out += len(data)
        out = ex.out
        if out:
            ex.out = b""
            if ex.chunked_out:
                self.send(b"".join((out, b"%x\r\n" % len(data), data, b"\r\n")))
            else:
                self.send(out + data)
        elif ex.chunked_out:
            self.transport.writelines(hh.chunk(data))
        else:
            self.transport.write(data)

    def flush_head(self) -> None:
        """End of an upstream read: a head still held goes out now (slow or empty bodies)."""
        ex = self.active
        if ex is not None and ex.out:
            self.transport.write(ex.out)
            ex.out = b""

    def on_response_complete(self) -> None:
        ex = self.active
        if ex is None:
            return
        out = ex.out
        if out:
            ex.out = b""
            self.transport.write(out + hh.LAST_CHUNK if ex.chunked_out else out)
        elif ex.chunked_out:
            self.transport.write(hh.LAST_CHUNK)
        endpoint = ex.endpoint
        if ex.conn is not None and endpoint is not None:
            ex.conn = None
            in_flight = self.ctx.state.in_flight
            key = endpoint.key
            left = in_flight.get(key, 1) - 1
            if left > 0:
                in_flight[key] = left
            else:
                in_flight.pop(key, None)
        self._finish(ex, close=ex.close_after or self.tunnel is not None)

    def upstream_failed(self, failure: UpstreamFailure) -> None:
        ex = self.active
        if ex is None or ex.done:
            return
        if ex.conn is not None:
            ex.conn = None
            self._uncount(ex)
        if ex.responded:
            ex.flags = ResponseFlag.UR
            self._finish(ex, close=True, abort=True)  # truncated response: the client must know
        else:
            self._failed(ex, failure)

    def upstream_pause_writing(self) -> None:
        self._pause(UPSTREAM)

    def upstream_resume_writing(self) -> None:
        self._resume(UPSTREAM)

    def _linger(self) -> None:
        """Close after answering a client still sending its body (RFC 9112 9.6).

        Closing outright would make the kernel answer the client's next bytes
        with a reset, which can destroy the answer before the client reads it.
        So: send FIN after the answer, keep reading (and discarding: `DONE`)
        until the client closes too, and cut it after `LINGER_S` at most.
        """
        transport = self.transport
        transport.write_eof()
        transport.resume_reading()  # whatever paused it, what comes now is discarded
        self.loop.call_later(LINGER_S, transport.abort)

    def _finish(self, ex: Exchange, *, close: bool, abort: bool = False) -> None:
        """End `ex` exactly once; then close, or start the next pipelined request."""
        if ex.done:
            return
        ex.done = True
        self.watch.waiting.discard(ex)
        if ex.timer is not None:
            ex.timer.cancel()
            ex.timer = None
        if ex.connecting is not None or ex.conn is not None:
            self._drop_upstream(ex)
        pools = self.pools
        if ex.counted:
            pools.active_requests -= 1
        if ex.attempts:
            backend = ex.decision.backend if ex.decision is not None else None
            if backend is not None:
                breakers = self.ctx.breakers
                breakers.leave_request(backend.name)
                if ex.retrying:
                    breakers.leave_retry(backend.name)
        if ex.retrying:
            pools.active_retries -= 1
        now = 0.0
        counter = self.counter
        if ex.counted_only and counter is not None:
            now = self.now()
            decision = ex.decision
            route = decision.route if decision is not None else None
            backend = decision.backend if decision is not None else None
            endpoint = ex.endpoint
            counter.close_request(
                route.name if route is not None else "",
                backend.name if backend is not None else "",
                endpoint.cluster if endpoint is not None else "",
                ex.status,
                now - ex.started,
            )
        elif ex.log is not None:
            self._end_log(ex)
        if self.active is not ex:
            return
        self.active = None
        if self.paused & DONE and not self.queue:
            close = close or self.closing
        if close or not ex.body_done or (self.closing and not self.queue):
            self.closed()
            self.queue = None
            if abort:
                self.transport.abort()
            elif not ex.body_done and self.transport.can_write_eof():
                self._linger()
            else:
                self.transport.close()
            return
        nxt = self.next_request()
        if nxt is not None:
            if not self.queue:
                self._resume(PIPELINE)
            self._start(nxt)
        elif self.refusal is not None:
            err = self.refusal
            self.refusal = None
            self.transport.write(hh.error_response(err.status, err.cause, close=True))
            self.transport.close()
        else:
            plan = ex.plan
            self.idle_at = (now or self.now()) + (
                plan.idle_s if plan is not None else self.first_request_idle_s
            )
            if not self.shed_listed:
                self.watch.went_idle_now(self)

    def _begin_log(self, ex: Exchange, facts: RequestFacts) -> RequestLog:
        headers = facts.headers
        log = RequestLog(
            start_time=time.time(),
            method=facts.method,
            path=facts.path,
            protocol="HTTP/" + ex.version,
            authority=ex.host.decode("latin-1"),
            user_agent=headers.get("user-agent") or "",
            x_forwarded_for=headers.get("x-forwarded-for") or "",
            x_request_id=ex.request_id.decode("latin-1"),
            downstream_remote_address=self.client_ip,
            listener=facts.listener,
        )
        ex.token = self.ctx.observer.begin(log, headers.as_dict())  # type: ignore[attr-defined]
        return log

    def _end_log(self, ex: Exchange) -> None:
        log = ex.log
        assert log is not None
        log.response_code = ex.status
        log.response_flags = FLAG_TEXT[ex.flags]
        log.bytes_received = ex.bytes_in
        log.bytes_sent = ex.bytes_out
        log.duration = self.now() - ex.started
        log.attempts = ex.attempts
        log.x_request_id = ex.request_id.decode("latin-1")
        decision = ex.decision
        if decision is not None:
            route = decision.route
            backend = decision.backend
            log.route_name = route.name if route is not None else ""
            log.backend_name = backend.name if backend is not None else ""
        endpoint = ex.endpoint
        if endpoint is not None:
            log.upstream_host = f"{endpoint.address}:{endpoint.port}"
            log.upstream_cluster = endpoint.cluster
        self.ctx.observer.end(ex.token, log)
