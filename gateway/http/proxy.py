"""The client-facing HTTP/1.1 proxy: one asyncio Protocol per client connection.

Theory of operation. `http.core_client.RequestCore` (the base of this
class) parses the client's bytes without I/O and says what to do after each
read: start a request that became active, send held body bytes to the
bound upstream, refuse (`HeadError`: answered before anything is forwarded
whole). A parsed head becomes an `Exchange`; exchanges run one at a time per
connection, so pipelined requests are answered in order (the next ones wait
in `queue` with their early body bytes, and reading pauses meanwhile). An
exchange routes once on the table it started with, takes an idle pooled
upstream connection synchronously (a Task only when a new connection must be
opened), writes the pre-joined head, then streams the body:
`upstream.UpstreamConnection` (the shell of `upstream.response_core.ResponseCore`)
calls back into this protocol (it is the connection's *sink*) with the
response, which is streamed to the client, re-framed as needed. Flow control
is symmetric: when one side's write buffer fills, reading from the other
side pauses (`paused` keeps a bitmask of reasons so one cause cannot resume
what another paused).

Retries happen only before any response byte was forwarded and only while
the request body is replayable (none, or fully buffered and small): see
`retry_policy`. Timeouts: `timeouts.request_s` bounds the wait for the
response head across all tries, the per-try timeout each try; once the head is
forwarded the body streams without a deadline (a 1 GiB download is not a
timeout), bounded by the peers closing. Between requests a connection may sit
idle for the last matched rule's `timeouts.idle` (before its first request,
`first_request_idle_s`); the loop's `DeadlineWatch` closes it after that.

Between route match and upstream runs the rule's filter chain
(`gateway.http.filters`), built once per rule when the table was compiled
(`CompiledRule.plan`, a `http.plan.RulePlan`): request filters that may answer
locally (CORS preflight, redirect, ...), then the header edits and URL
rewrite joined into the upstream head (`http.upstream_head.UpstreamHeads`,
which keeps a keep-alive connection's last plain head and its forwarding
lines per Host), then mirrors; the response gets the rule's response header
edits. A rule without filters pays a truthiness test per kind. With
metrics-only telemetry the observer is told `open_request`/`close_request`
and no `RequestLog` is built.

Layout: this module is the connection (lifecycle, flow control, starting an
exchange, answers made by the proxy itself); the request core is
`http.core_client.RequestCore`, the shell's flow control
`http.request.RequestReader`, tries and retries `http.tries.TryRunner`, the
response side `http.response.ResponseRelay`, all mixed into `HttpProxy`; the
upstream request head is built by `http.upstream_head.UpstreamHeads`.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final

from gateway.context import GatewayContext, NullObserver
from gateway.http import head as hh
from gateway.http.core_client import FLUSH, REFUSE, START
from gateway.http.exchange import Exchange
from gateway.http.filters.access import DENIED as ACCESS_DENIED
from gateway.http.filters.access import AccessCheck
from gateway.http.filters.base import LocalAnswer
from gateway.http.plan import RulePlan
from gateway.http.response import ResponseRelay
from gateway.http.tls_facts import ConnectionTls, header_safe, peer_subject
from gateway.http.upstream_head import UpstreamHeads
from gateway.ops.observer import GatewayObserver
from gateway.outcome import ErrorKind, ResponseFlag, flag_of
from gateway.routing.decision import RequestFacts
from gateway.transport import Transport


class HttpProxy(ResponseRelay):
    """One client connection; see the module docstring."""

    __slots__ = (
        "denied",
        "facts",
        "heads",
        "host_name",
        "host_raw",
        "listener_access",
        "misdirected",
        "proto",
        "server_tls",
        "shared",
        "sni",
        "subject_drop",
        "subject_line",
        "view",
    )

    def __init__(
        self,
        ctx: GatewayContext,
        listener: str,
        *,
        proto: bytes = b"http",
        tls: ConnectionTls | None = None,
        access: AccessCheck | None = None,
        max_body_bytes: int | None = None,
        shared: bool = False,
    ) -> None:
        super().__init__(ctx, listener)
        self.body_limit = -1 if max_body_bytes is None else max_body_bytes
        self.proto = proto
        self.server_tls = tls
        self.shared = shared
        """Whether several listeners share this connection's socket (`listener` is then its
        `address:port`): each request goes to the listener its host selects."""
        self.listener_access = access
        """The listener's access rules, asked once per connection (client address)."""
        self.denied = False
        """Whether the listener's access rules refuse this connection: every request gets 403."""
        self.sni = ""
        """The server name the client asked for in its TLS handshake ("" without TLS or SNI)."""
        self.misdirected = False
        """Whether the current Host is not served by the connection's certificate (421)."""
        self.subject_line = b""
        """mTLS: the header line carrying the verified client certificate's subject."""
        self.subject_drop: frozenset[bytes] | None = None
        """mTLS: the subject header's name, removed from what the client sent."""
        observer = ctx.observer
        self.observe = not isinstance(observer, NullObserver)
        if isinstance(observer, GatewayObserver) and not observer.detailed:
            self.counter = observer
        self.host_raw: bytes | None = None
        self.host_name = ""
        self.facts: RequestFacts | None = None
        self.view = hh.HeaderView([])
        self.heads: UpstreamHeads | None = None
        """Builds this connection's upstream request heads (made by its first request,
        dropped while idle)."""

    # --- asyncio.Protocol: client side -------------------------------------
    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.send = transport.write
        if not self.client_ip:  # else given by a PROXY protocol header (runtime.listener)
            peer = transport.get_extra_info("peername")
            self.client_ip = peer[0] if peer else ""
        self.trusted = hh.is_trusted(self.client_ip, _networks(self.ctx.settings.trusted_proxies))
        access = self.listener_access
        if access is not None and not access.allows(self.client_ip):
            self.denied = self.misdirected = True
        tls = self.server_tls
        if tls is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            self.sni = tls.server_name(ssl_object)
            if tls.tls.client_ca_file:
                name = tls.tls.client_subject_header.encode("ascii")
                self.subject_drop = frozenset({name.lower()})
                subject = peer_subject(ssl_object)
                if subject:
                    self.subject_line = name + b": " + header_safe(subject) + b"\r\n"
        self.ctx.connections.add(self)
        self.idle_at = self.now() + self.first_request_idle_s
        self.watch.track(self)

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            if tunnel.transport is not None:
                tunnel.transport.write(data)
            return
        was_paused = self.paused
        actions = self.receive(data)
        if self.paused and not was_paused:
            self.transport.pause_reading()
        if actions:
            if actions & FLUSH:
                self._flush_body()
            if actions & START:
                self._start_ready()
            if actions & REFUSE:
                refused = self.refused
                assert refused is not None
                self._refuse(refused)

    def shed(self) -> bool:
        """Also drop the per-request memos, made again by the next request. What an
        idle keep-alive connection holds is then its transport, this object and its
        addresses."""
        if super().shed():
            self.heads = None
            self.facts = None
            self.host_raw = None
            self.host_name = ""
            self.valid_host = b""
            return True
        return False

    def eof_received(self) -> bool:
        if self.active is None:
            return False
        self.closing = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.connections.discard(self)
        self.watch.untrack(self)
        self.closed()
        if self.tunnel is not None:
            self.tunnel.close()
        ex = self.active
        if ex is not None and not ex.done:
            ex.flags = ex.flags or ResponseFlag.DC
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

    # --- starting and retrying an exchange -------------------------------------
    def _start_ready(self) -> None:
        ex = self.ready
        self.ready = None
        if ex is not None and ex is self.active and not ex.done:
            self._start(ex)

    def _start(self, ex: Exchange) -> None:
        ctx = self.ctx
        table = ctx.table
        assert table is not None, "serving before a table was installed"
        ex.table = table
        ex.started = now = self.now()
        self.idle_at = 0.0
        raw_host = ex.host
        if raw_host != self.host_raw:
            self.host_raw = raw_host
            self.host_name = hh.host_name(raw_host)
            if self.sni:
                tls = self.server_tls
                assert tls is not None
                self.misdirected = self.denied or not tls.covers(self.sni, self.host_name)
        path = ex.path.decode("latin-1")
        facts = self.facts  # one per connection, refilled: routing reads it synchronously
        if facts is None:
            facts = self.facts = RequestFacts("", "", "", client_ip=self.client_ip)
            facts.listener = self.listener
            facts.headers = self.view  # type: ignore[assignment]
        facts.method = _METHODS.get(ex.method) or ex.method.decode("ascii")
        facts.host = self.host_name
        facts.path = path
        facts.query = ex.query.decode("latin-1") if ex.query else ""
        unclaimed = False
        if self.shared:  # the listener the host selects (none: 404 below)
            selected = table.listener_for(self.listener, self.host_name)
            unclaimed = selected is None
            facts.listener = selected if selected is not None else self.listener
        view = self.view  # likewise one per connection, refilled
        view.raw = ex.headers
        view.decoded = None
        facts._cookies = None
        if self.observe:
            counter = self.counter
            if counter is not None and not ex.traced:
                counter.open_request()
                ex.counted_only = True
            else:
                ex.log = self._begin_log(ex, facts)
        if self.misdirected:  # or refused by the listener's access rules
            if self.denied:
                self._local(ex, ACCESS_DENIED)
            else:
                self._error(ex, "misdirected_request")
            return
        if unclaimed:  # no listener on this socket takes the host
            self._error(ex, ErrorKind.NO_ROUTE)
            return
        decision = table.route_http(facts, ctx.state, now)
        ex.decision = decision
        rule = decision.rule
        if rule is None:
            self._error(ex, decision.error or "no_route")
            return
        ex.rule = rule
        # built by http.plan.build_plan when the table was compiled (compile_http_table)
        plan: RulePlan = rule.plan  # type: ignore[assignment]
        if plan.request_filters:
            ex.scheme = self.proto
            for request_filter in plan.request_filters:
                answer = request_filter.on_request(ex, facts, now)
                if answer is not None:
                    self._local(ex, answer)
                    return
        endpoint = decision.endpoint
        if endpoint is None:
            self._error(ex, decision.error or "no_healthy_upstream")
            return
        limit = plan.max_body_bytes
        if limit >= 0 and (ex.body_limit < 0 or limit < ex.body_limit):
            ex.body_limit = limit
            if ex.content_length > limit or ex.bytes_in > limit:
                self._error(ex, "request_body_too_large")
                return
        if plan.backend_plans:
            backend = decision.backend
            assert backend is not None
            plan = plan.for_backend(backend.name)
        ex.plan = plan
        ex.deadline = now + plan.request_s
        heads = self.heads
        if heads is None:
            heads = self.heads = UpstreamHeads(
                ctx, self.client_ip, self.proto, self.trusted, self.subject_drop, self.subject_line
            )
        heads.fill(ex, plan)
        if plan.forward_filters:
            for forward_filter in plan.forward_filters:
                forward_filter.on_forward(ex, facts, ctx)
        self.pools.active_requests += 1
        ex.counted = True
        self._try(ex, endpoint)

    # --- answers made here -------------------------------------------------------
    def _must_close(self, ex: Exchange) -> bool:
        return not ex.keep_alive or not ex.body_done or self.closing

    def _error(self, ex: Exchange, cause: str) -> None:
        status = hh.ERROR_STATUS.get(cause, 502)
        ex.status = status
        if not ex.flags:
            ex.flags = flag_of(cause)
        close = self._must_close(ex)
        data = hh.error_response(
            status,
            cause,
            close=close,
            request_id=ex.request_id,
            head_only=ex.method == b"HEAD",
        )
        self._answer(ex, data, close)

    def _local(self, ex: Exchange, answer: LocalAnswer) -> None:
        """Send the answer a request filter made instead of forwarding."""
        ex.status = answer.status
        if answer.cause:  # the access log says why: access, auth, rate_limited, ...
            ex.flags = flag_of(answer.cause)
        close = self._must_close(ex)
        data = hh.local_response(
            answer.status,
            answer.headers,
            answer.body,
            close=close,
            request_id=ex.request_id,
            extra=ex.response_lines,
            head_only=ex.method == b"HEAD",
        )
        self._answer(ex, data, close)

    def _answer(self, ex: Exchange, data: bytes, close: bool) -> None:
        ex.bytes_out += len(data)
        self.transport.write(data)
        self._finish(ex, close=close)

    def _refuse(self, err: hh.HeadError) -> None:
        """A request we will not forward: answer and close, whatever was in flight.

        Complete requests pipelined before it are answered first, in order, and
        the refusal after them (`_finish` writes `refusal` once the queue is
        empty); a request whose own body is malformed is never forwarded whole.
        """
        self.closed()
        self.ready = None
        ex = self.active
        if ex is not None and not ex.done and ex is not self.parsing and ex.body_done:
            queue = self.queue
            if queue and self.parsing is not None and self.parsing in queue:
                queue.remove(self.parsing)  # its body was the malformed part
            if not self.closing:  # after a `Connection: close` nothing more is answered
                self.refusal = err
            if not ex.started:
                self._start(ex)
            return
        self.queue = None
        if ex is not None and not ex.done:
            if ex.started:
                # its own body is malformed: the upstream must not see a complete request
                self._drop_upstream(ex)
                if ex.responded:
                    self._finish(ex, close=True, abort=True)
                    return
                ex.status = err.status
                ex.body_done = False
                head_only = ex.method == b"HEAD"
                data = hh.error_response(err.status, err.cause, close=True, head_only=head_only)
                self._answer(ex, data, True)
                return
            ex.done = True
        head_only = ex is not None and ex.method == b"HEAD"
        data = hh.error_response(err.status, err.cause, close=True, head_only=head_only)
        self.transport.write(data)
        self.transport.close()


_METHODS: Final = {
    m: m.decode("ascii")
    for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS")
}

_NETWORKS: Final[dict[tuple[str, ...], list[Any]]] = {}


def _networks(cidrs: tuple[str, ...]) -> list[Any]:
    """trusted_proxies parsed once per distinct setting, not once per connection."""
    found = _NETWORKS.get(cidrs)
    if found is None:
        found = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        _NETWORKS[cidrs] = found
    return found
