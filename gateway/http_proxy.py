"""The client-facing HTTP/1.1 proxy: one asyncio Protocol per client connection.

Theory of operation. httptools parses the client's bytes and calls back
(`on_url`, `on_header`, `on_headers_complete`, `on_body`,
`on_message_complete`); refusals (`HeadError`) are raised from the callbacks
and answered before anything is forwarded. A parsed head becomes an
`Exchange`; exchanges run one at a time per connection, so pipelined requests
are answered in order (the next ones wait in `queue` with their early body
bytes, and reading pauses meanwhile). An exchange routes once on the table it
started with, takes an idle pooled upstream connection synchronously (a Task
only when a new connection must be opened), writes the pre-joined head, then
streams the body: `upstream.UpstreamConnection` calls back into this protocol
(it is the connection's *sink*) with the response, which is streamed to the
client, re-framed as needed. Flow control is symmetric: when one side's write
buffer fills, reading from the other side pauses (`_pause`/`_resume` keep a
bitmask of reasons so one cause cannot resume what another paused).

Retries happen only before any response byte was forwarded and only while
the request body is replayable (none, or fully buffered and small): see
`retry_policy`. Timeouts: `timeouts.request_s` bounds the wait for the
response head across all tries, the per-try timeout each try; once the head is
forwarded the body streams without a deadline (a 1 GiB download is not a
timeout), bounded by the peers closing.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import deque
from typing import Any

import httptools

from gateway import http_head as hh
from gateway.context import GatewayContext, NullObserver
from gateway.http_exchange import BODY_BUFFER_LIMIT, Exchange, deadline_watch, next_request_id
from gateway.http_response import ResponseRelay
from gateway.retry_policy import backoff_s, retry_allowed
from gateway.routing.decision import RequestFacts
from gateway.upstream import PoolSet, UpstreamConnection, UpstreamFailure

_PIPELINE, _UPSTREAM, _BUFFER, _TUNNEL_WAIT, _DONE = 1, 2, 4, 8, 16
_HOST, _CL, _TE, _CONN, _UPGRADE, _HOP, _FWD, _EXPECT, _REQID, _XFF = range(10)
_SPECIAL: dict[bytes, int] = {
    b"host": _HOST,
    b"content-length": _CL,
    b"transfer-encoding": _TE,
    b"connection": _CONN,
    b"upgrade": _UPGRADE,
    b"keep-alive": _HOP,
    b"te": _HOP,
    b"trailer": _HOP,
    b"x-forwarded-for": _XFF,
    b"x-forwarded-proto": _FWD,
    b"x-forwarded-host": _FWD,
    b"forwarded": _FWD,
    b"expect": _EXPECT,
    b"x-request-id": _REQID,
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_SAME_ENDPOINT_OK = frozenset({"upstream_reset", "gateway_status", "server_status"})


class HttpProxy(ResponseRelay, asyncio.Protocol):
    """One client connection; see the module docstring."""

    __slots__ = (
        "active",
        "client_ip",
        "closing",
        "conn_tokens",
        "ctx",
        "expect",
        "fwd",
        "hbytes",
        "headers",
        "host",
        "host_count",
        "listener",
        "loop",
        "nheaders",
        "observe",
        "parser",
        "parsing",
        "paused",
        "proto",
        "queue",
        "ready",
        "request_id",
        "te",
        "transport",
        "trusted",
        "tunnel",
        "upgrade",
        "url",
        "watch",
        "write_paused",
    )

    def __init__(self, ctx: GatewayContext, listener: str, *, proto: bytes = b"http") -> None:
        self.ctx = ctx
        self.listener = listener
        self.proto = proto
        self.loop = asyncio.get_running_loop()
        self.watch = deadline_watch(self.loop)
        self.observe = not isinstance(ctx.observer, NullObserver)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = ""
        self.trusted = False
        self.active: Exchange | None = None
        self.parsing: Exchange | None = None
        self.queue: deque[Exchange] | None = None
        self.ready: Exchange | None = None
        self.paused = 0
        self.write_paused = False
        self.closing = False
        self.tunnel: UpstreamConnection | None = None
        self._reset_head()

    def _reset_head(self) -> None:
        self.url = b""
        self.headers: hh.Headers = []
        self.nheaders = 0
        self.hbytes = 0
        self.host: bytes | None = None
        self.host_count = 0
        self.te: bytes | None = None
        self.conn_tokens: list[bytes] | None = None
        self.upgrade = b""
        self.fwd: dict[bytes, bytes] | None = None
        self.expect = False
        self.request_id = b""

    # --- asyncio.Protocol: client side -------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""
        self.trusted = hh.is_trusted(self.client_ip, _networks(self.ctx.settings.trusted_proxies))
        self.ctx.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            if self.tunnel.transport is not None:
                self.tunnel.transport.write(data)
            return
        if self.paused & _DONE:
            return
        try:
            self.parser.feed_data(data)
            if self.ready is not None:
                self._start_ready()
        except httptools.HttpParserUpgrade as upgrade:
            ex = self.parsing or self.active
            if ex is not None:
                rest = data[upgrade.args[0] :]
                if rest:
                    ex.buffer(rest)
                ex.body_done = True
                self._pause(_TUNNEL_WAIT)
            if self.ready is not None:
                self._start_ready()
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, hh.HeadError):
                self._refuse(cause)
            else:
                raise
        except httptools.HttpParserError as exc:
            self._refuse(hh.parser_error_status(str(exc), self.te, self.parser.get_http_version()))

    def close_idle(self) -> None:
        """Graceful drain: close now if no request is being received or answered."""
        if self.active is None and self.parsing is None and not self.queue:
            self.paused |= _DONE
            self.transport.close()

    def eof_received(self) -> bool:
        if self.active is None:
            return False
        self.closing = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.connections.discard(self)
        self.paused |= _DONE
        if self.tunnel is not None:
            self.tunnel.close()
        ex = self.active
        if ex is not None and not ex.done:
            ex.flags = ex.flags or "DC"
            self._finish(ex, close=True)
        self.queue = None

    def pause_writing(self) -> None:
        self.write_paused = True
        conn = self.tunnel or (self.active.conn if self.active else None)
        if conn is not None and conn.transport is not None:
            conn.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        conn = self.tunnel or (self.active.conn if self.active else None)
        if conn is not None and conn.transport is not None:
            conn.transport.resume_reading()

    def _pause(self, reason: int) -> None:
        if not self.paused:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused:
                self.transport.resume_reading()

    # --- httptools callbacks -------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset_head()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.ctx.settings.max_request_line_bytes:
            raise hh.HeadError(414, "request_line_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.nheaders += 1
        self.hbytes += len(name) + len(value) + 4
        settings = self.ctx.settings
        if self.nheaders > settings.max_headers or self.hbytes > settings.max_header_bytes:
            raise hh.HeadError(431, "request_headers_too_large")
        lname = name.lower()
        kind = _SPECIAL.get(lname)
        if kind is None:
            if not lname.startswith(b"proxy-"):
                self.headers.append((name, value))
        elif kind == _HOST:
            self.host_count += 1
            self.host = value
        elif kind == _CL:
            self.headers.append((name, value))
        elif kind == _TE:
            self.te = value
            hh.check_transfer_encoding(value)
        elif kind == _CONN:
            self.conn_tokens = (self.conn_tokens or []) + hh.connection_tokens(value)
        elif kind == _UPGRADE:
            self.upgrade = value
        elif kind in (_FWD, _XFF):
            if self.trusted:
                fwd = self.fwd if self.fwd is not None else {}
                old = fwd.get(lname)
                fwd[lname] = old + b", " + value if old else value
                self.fwd = fwd
        elif kind == _EXPECT:
            self.expect = value.strip().lower() == b"100-continue"
        elif kind == _REQID:
            self.request_id = value
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        hh.check_version(version)
        method: bytes = parser.get_method()
        if method == b"CONNECT":
            raise hh.HeadError(501, "connect_not_supported")
        authority, path, query = hh.split_target(self.url)
        if authority:
            host = authority
        elif self.host_count == 1 and self.host:
            host = self.host
        elif self.host_count > 1 or version == "1.1":
            raise hh.HeadError(400, "missing_or_repeated_host")
        else:
            host = b""
        headers = self.headers
        if self.conn_tokens:
            gone = frozenset(self.conn_tokens)
            headers = [(n, v) for n, v in headers if n.lower() not in gone]
        upgrade = self.upgrade if parser.should_upgrade() else b""
        chunked = self.te is not None
        has_body = chunked or any(n.lower() == b"content-length" and v != b"0" for n, v in headers)
        ex = Exchange(method, path, query, version, host, headers, self.request_id, self.fwd)
        ex.owner = self
        ex.keep_alive = parser.should_keep_alive() and not self.closing
        ex.chunked = chunked
        ex.body_done = not has_body
        ex.upgrade = upgrade
        ex.expect = self.expect and has_body
        if not ex.keep_alive:
            self.closing = True
        self.parsing = ex
        if self.active is None:
            # started once this read is parsed whole: a request whose body turns out
            # malformed in the same read is refused before anything is forwarded
            self.active = ex
            self.ready = ex
        else:
            if self.queue is None:
                self.queue = deque()
            self.queue.append(ex)
            self._pause(_PIPELINE)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None or ex.done:
            return
        ex.bytes_in += len(body)
        conn = ex.conn
        if conn is not None and ex is self.active and conn.transport is not None:
            ex.replay = None
            ex.body_sent = True
            if ex.chunked:
                conn.transport.writelines(hh.chunk(body))
            else:
                conn.transport.write(body)
        elif ex.buffer(body) > BODY_BUFFER_LIMIT:
            self._pause(_BUFFER)

    def on_message_complete(self) -> None:
        ex = self.parsing
        self.parsing = None
        if ex is None:
            return
        if ex.upgrade:
            return  # data_received sees the upgrade and buffers what follows
        ex.body_done = True
        conn = ex.conn
        if ex.chunked and conn is not None and ex is self.active and conn.transport is not None:
            conn.transport.write(hh.LAST_CHUNK)
        if self.closing:
            self._pause(_DONE)

    # --- starting and retrying an exchange -------------------------------------
    def _start_ready(self) -> None:
        ex = self.ready
        self.ready = None
        if ex is not None and ex is self.active and not ex.done:
            self._start(ex)

    def _start(self, ex: Exchange) -> None:
        ctx = self.ctx
        table = ctx.table
        ex.table = table
        ex.started = self.loop.time()
        path = ex.path.decode("latin-1")
        facts = RequestFacts(
            ex.method.decode("ascii"),
            hh.host_name(ex.host),
            path,
            ex.query.decode("latin-1"),
            hh.HeaderView(ex.headers),  # type: ignore[arg-type]
            self.client_ip,
            self.listener,
        )
        if self.observe:
            ex.log = self._begin_log(ex, facts)
        decision = table.route_http(facts, ctx.state, ex.started)
        ex.decision = decision
        if decision.endpoint is None:
            if decision.error == "redirect":
                close = self._must_close(ex)
                ex.status = decision.redirect_status
                self._answer(
                    ex,
                    hh.redirect_response(ex.status, decision.redirect_location, close=close),
                    close,
                )
            else:
                self._error(ex, decision.error or "no_route")
            return
        rule: Any = decision.rule
        ex.rule = rule
        ex.deadline = ex.started + rule.timeouts.request_s
        ex.head = self._request_head(ex, rule, path)
        pools = ctx.pools
        pools.active_requests += 1
        ex.counted = True
        self._try(ex, decision.endpoint)

    def _request_head(self, ex: Exchange, rule: Any, path: str) -> bytes:
        target = rule.rewrite_path(path).encode("latin-1")
        if ex.query:
            target += b"?" + ex.query
        headers = ex.headers
        if rule.request_remove:
            headers = hh.filter_headers(headers, rule.request_remove)
        if rule.request_set:
            headers = hh.set_headers(headers, rule.request_set)
        if rule.request_add:
            headers = headers + list(rule.request_add)
        if not ex.request_id:
            ex.request_id = next_request_id()
            headers.append((b"X-Request-Id", ex.request_id))
        client = self.client_ip.encode("ascii")
        headers += hh.forwarding_headers(
            ex.fwd or {}, trusted=self.trusted, client_ip=client, proto=self.proto, host=ex.host
        )
        if ex.chunked:
            headers.append((b"Transfer-Encoding", b"chunked"))
        if ex.upgrade:
            headers.append((b"Connection", b"upgrade"))
            headers.append((b"Upgrade", ex.upgrade))
        if self.observe:
            trace = self.ctx.observer.upstream_headers(ex.token)
            if trace:  # replaces the client's traceparent/tracestate, never duplicates them
                headers = hh.set_headers(headers, trace)
        headers.append((b"Via", ex.via(self.ctx.settings.via)))
        line = ex.method + b" " + target + b" HTTP/1.1\r\n"
        if rule.host_rewrite:
            ex.fixed_host = rule.host_rewrite.encode("latin-1")
        elif rule.preserve_host:
            ex.fixed_host = ex.host
        return hh.join_head(line, headers)

    def _try(self, ex: Exchange, endpoint: Any) -> None:
        ex.endpoint = endpoint
        ex.attempts += 1
        pools: PoolSet = self.ctx.pools
        pool = pools.pool(endpoint, ex.decision.backend)
        self._arm_timer(ex)
        conn = pool.take_idle()
        ex.reused = conn is not None
        if conn is not None:
            self._bind(ex, conn)
        else:
            ex.connecting = self.loop.create_task(self._connect(ex, pool))

    async def _connect(self, ex: Exchange, pool: Any) -> None:
        try:
            conn = await pool.connect(ex.rule.timeouts.connect_s)
        except UpstreamFailure as failure:
            ex.connecting = None
            if ex is self.active and not ex.done:
                endpoint = ex.endpoint
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
        conn.bind(self, head_only=ex.method == b"HEAD")
        key = ex.endpoint.key
        in_flight = self.ctx.state.in_flight
        in_flight[key] = in_flight.get(key, 0) + 1
        host = ex.fixed_host or _endpoint_host(ex.endpoint)
        out = [b"Host: " + host + b"\r\n" if host else b""]
        head = ex.head
        cut = head.index(b"\r\n") + 2
        out.insert(0, head[:cut])
        out.append(head[cut:])
        body = ex.replay if ex.replay is not None else ex.body
        if body:
            ex.body_sent = True
            for piece in body:
                if ex.chunked:
                    out.extend(hh.chunk(piece))
                else:
                    out.append(piece)
            if ex.body_done and not ex.upgrade and len(body) and ex.bytes_in <= BODY_BUFFER_LIMIT:
                ex.replay = body
        if ex.chunked and ex.body_done and not ex.upgrade:
            out.append(hh.LAST_CHUNK)
        ex.body = None
        transport = conn.transport
        assert transport is not None
        transport.write(b"".join(out))
        if ex.upgrade and ex.replay is None and body:
            ex.replay = None
        if self.write_paused:
            transport.pause_reading()
        if ex.expect and not ex.body_done and not ex.bytes_in:
            self.transport.write(_CONTINUE)
        self._resume(_BUFFER)

    def _arm_timer(self, ex: Exchange) -> None:
        rule = ex.rule
        retry = rule.retry
        per_try = (retry.per_try_timeout_s if retry is not None else None) or (
            rule.timeouts.backend_request_s
        )
        at = ex.deadline
        if per_try:
            at = min(at, self.loop.time() + per_try)
        self.watch.add(ex, at)

    def _timed_out(self, ex: Exchange) -> None:
        if ex.done or ex.responded or ex is not self.active:
            return
        whole = self.loop.time() >= ex.deadline - 1e-3
        self._drop_upstream(ex)
        if whole:
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
        key = ex.endpoint.key
        in_flight = self.ctx.state.in_flight
        left = in_flight.get(key, 1) - 1
        if left > 0:
            in_flight[key] = left
        else:
            in_flight.pop(key, None)

    def _failed(self, ex: Exchange, failure: UpstreamFailure) -> None:
        """A try failed before the response head: retry elsewhere or answer the error."""
        pools: PoolSet = self.ctx.pools
        self.watch.discard(ex)
        ex.flags = "UF" if failure.cause == "upstream_connect_failure" else "UR"
        if (
            failure.cause == "upstream_reset"
            and ex.reused
            and not ex.stale_retried
            and ex.method in hh.IDEMPOTENT_METHODS
            and (not ex.body_sent or ex.replay is not None)
            and not ex.upgrade
        ):
            # a pooled connection the upstream closed as we reused it: once, on a fresh one
            ex.stale_retried = True
            self._try(ex, ex.endpoint)
            return
        if retry_allowed(ex, failure.cause, pools, self.loop.time()):
            tried = ex.tried if ex.tried is not None else set()
            tried.add(ex.endpoint.key)
            ex.tried = tried
            endpoint = ex.table.retry_pick(ex.decision, tried, self.ctx.state)
            if endpoint is None and failure.cause in _SAME_ENDPOINT_OK:
                endpoint = ex.endpoint  # a stale keep-alive socket: the same endpoint is fine
            if endpoint is not None:
                ex.retries += 1
                if not ex.retrying:
                    ex.retrying = True
                    pools.active_retries += 1
                delay = backoff_s(ex.rule.retry, ex.retries)
                ex.timer = self.loop.call_later(delay, self._retry_now, ex, endpoint)
                return
        self._error(ex, failure.cause)

    def _retry_now(self, ex: Exchange, endpoint: Any) -> None:
        ex.timer = None
        if ex.done or ex is not self.active:
            return
        self._try(ex, endpoint)

    # --- answers made here -------------------------------------------------------
    def _must_close(self, ex: Exchange) -> bool:
        return not ex.keep_alive or not ex.body_done or self.closing

    def _error(self, ex: Exchange, cause: str) -> None:
        status = hh.ERROR_STATUS.get(cause, 502)
        ex.status = status
        close = self._must_close(ex)
        self._answer(
            ex, hh.error_response(status, cause, close=close, request_id=ex.request_id), close
        )

    def _answer(self, ex: Exchange, data: bytes, close: bool) -> None:
        ex.bytes_out += len(data)
        self.transport.write(data)
        self._finish(ex, close=close)

    def _refuse(self, err: hh.HeadError) -> None:
        """A request we will not forward: answer and close, whatever was in flight."""
        self.paused |= _DONE
        self.ready = None
        self.queue = None
        ex = self.active
        if ex is not None and not ex.done:
            if ex is not self.parsing and ex.body_done:
                # an earlier complete request: answer it, then close
                self.closing = True
                if not ex.started:
                    self._start(ex)
                return
            if ex.started:
                # its own body is malformed: the upstream must not see a complete request
                self._drop_upstream(ex)
                if ex.responded:
                    self._finish(ex, close=True, abort=True)
                    return
                ex.status = err.status
                ex.body_done = False
                self._answer(ex, hh.error_response(err.status, err.cause, close=True), True)
                return
            ex.done = True
        self.transport.write(hh.error_response(err.status, err.cause, close=True))
        self.transport.close()


class _Timeout(UpstreamFailure):
    cause = "upstream_timeout"


_TIMEOUT = _Timeout("per-try timeout")


def _endpoint_host(endpoint: Any) -> bytes:
    address = endpoint.address
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{endpoint.port}".encode("ascii")


_NETWORKS: dict[tuple[str, ...], list[Any]] = {}


def _networks(cidrs: tuple[str, ...]) -> list[Any]:
    """trusted_proxies parsed once per distinct setting, not once per connection."""
    found = _NETWORKS.get(cidrs)
    if found is None:
        found = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        _NETWORKS[cidrs] = found
    return found
