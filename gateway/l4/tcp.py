"""L4 proxies: TCP listeners and TLS passthrough listeners.

A `TcpProxy` routes each accepted connection with `table.route_tcp`, connects
to the chosen endpoint (on connect failure, another one from
`table.retry_pick`, up to `CONNECT_TRIES`), then moves bytes both ways. The
TLS passthrough variant first peeks the ClientHello (`client_hello.parse_sni`)
to route on the server name, then forwards those same bytes untouched.

Backpressure: each side pauses reading from the other while its own write
buffer is above the high-water mark (asyncio `pause_writing`/`resume_writing`),
so a fast sender never piles bytes in memory. Half-close is forwarded
(`write_eof`); the pair closes when both directions ended.

Zero-copy, opt-in (`PORTWAY_SPLICE=1`): once both sockets are connected (and
anything read before, the TLS ClientHello, is written), the pair is handed to
`l4.splice.SplicedPair`, which takes the sockets out of their transports and
moves bytes with splice(2) through a pipe per direction, never into Python
(Linux). benchmarks/tcp.sh on this machine, one iperf3 stream, gave no clear
winner: with both cores busy splice was ahead (10.7 vs 7.6, 4.3 vs 3.8
Gbit/s); on a quiet machine whichever ran last was ahead (copy 21.9-22.0 vs
splice 18.9-19.8 in two runs, splice 18.8 vs copy 17.9 with the order
swapped). It does not measure faster, so the simpler copy path (transports
and `data_received`) is the default.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from gateway.context import GatewayContext, NullObserver, RequestLog
from gateway.http.filters.access import AccessCheck, route_access
from gateway.http.plan import RulePlan
from gateway.l4.client_hello import ClientHelloError, parse_sni
from gateway.l4.splice import SplicedPair
from gateway.l4.splice import available as splice_available
from gateway.upstream.outlier import Outcome

SPLICE = splice_available() and os.environ.get("PORTWAY_SPLICE", "0") not in ("", "0")
"""Relay connected pairs with splice(2) (`l4.splice`) when `PORTWAY_SPLICE=1`."""
CONNECT_TRIES = 3
HELLO_TIMEOUT_S = 10.0
_PENDING_LIMIT = 256 * 1024


class _Side(asyncio.Protocol):
    """One socket of a proxied pair; forwards to `peer` with flow control."""

    __slots__ = ("eof", "moved", "peer", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.eof = False
        self.moved = 0
        """Chunks forwarded from this side (the idle check compares it between checks)."""

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def forward(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            self.moved += 1
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None:
            return False
        if peer.eof:
            peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        self.peer = None
        if peer is not None and peer.transport is not None:
            peer.peer = None
            if exc is None:
                peer.transport.close()
            else:
                peer.transport.abort()


class _UpstreamSide(_Side):
    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.forward(data)


class TcpProxy(_Side):
    """The client socket of a TCP (or, with `peek_sni`, TLS passthrough) listener."""

    __slots__ = (
        "access",
        "client_ip",
        "ctx",
        "hello",
        "idle_quiet",
        "idle_s",
        "idle_seen",
        "idle_timer",
        "listener",
        "log",
        "peek_sni",
        "pending",
        "spliced",
        "task",
    )

    def __init__(
        self,
        ctx: GatewayContext,
        listener: str,
        *,
        peek_sni: bool = False,
        access: AccessCheck | None = None,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.listener = listener
        self.peek_sni = peek_sni
        self.access = access
        """The listener's access rules: a refused client is closed at once."""
        self.pending: list[bytes] = []
        self.hello = b""
        self.client_ip = ""
        self.task: asyncio.Task[None] | None = None
        self.log: RequestLog | None = None
        self.idle_s = 0.0
        self.idle_seen = -1
        self.idle_quiet = 0
        self.spliced: SplicedPair | None = None
        self.idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ctx.tunnels.add(self)
        if not self.client_ip:  # else given by a PROXY protocol header (runtime.listener)
            peer = transport.get_extra_info("peername")
            self.client_ip = peer[0] if peer else ""
        if self.access is not None and not self.access.allows(self.client_ip):
            self._refuse("access")
            return
        if not self.peek_sni:
            self._route("")
        else:
            loop = asyncio.get_running_loop()
            loop.call_later(HELLO_TIMEOUT_S, self._hello_timeout)

    def _hello_timeout(self) -> None:
        if self.task is None and self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            self.forward(data)
            return
        self.pending.append(data)
        assert self.transport is not None
        if self.task is None and self.peek_sni:
            self.hello += data
            try:
                sni = parse_sni(self.hello)
            except ClientHelloError:
                self.transport.abort()
                return
            if sni is None:
                return
            self.hello = b""
            self._route(sni)
        elif sum(len(p) for p in self.pending) > _PENDING_LIMIT:
            self.transport.pause_reading()

    def _route(self, sni: str) -> None:
        ctx = self.ctx
        table = ctx.table
        assert table is not None, "serving before a table was installed"
        now = asyncio.get_running_loop().time()
        decision = table.route_tcp(self.listener, sni or None, self.client_ip, ctx.state, now)
        if not isinstance(ctx.observer, NullObserver):
            self.log = RequestLog(
                method="TCP",
                protocol="TLS" if self.peek_sni else "TCP",
                authority=sni,
                downstream_remote_address=self.client_ip,
                listener=self.listener,
            )
            self.log.route_name = getattr(decision.route, "name", "")
        if decision.endpoint is None:
            self._refuse(decision.error or "no_route")
            return
        plan = decision.rule.plan if decision.rule is not None else None
        checks = route_access(plan.request_filters) if isinstance(plan, RulePlan) else ()
        for check in checks:
            if not check.allows(self.client_ip):
                self._refuse("access")
                return
        if self.transport is not None:
            self.transport.pause_reading()
        self.task = asyncio.get_running_loop().create_task(self._connect(table, decision))

    async def _connect(self, table: Any, decision: Any) -> None:
        loop = asyncio.get_running_loop()
        endpoint = decision.endpoint
        tried: set[str] = set()
        rule = decision.rule
        connect_s = rule.timeouts.connect_s if rule is not None else 2.0
        for _ in range(CONNECT_TRIES):
            try:
                _, upstream = await asyncio.wait_for(
                    loop.create_connection(_UpstreamSide, endpoint.address, endpoint.port),
                    connect_s,
                )
            except (OSError, TimeoutError):
                self.ctx.observer.upstream_connect_failed(endpoint.cluster, endpoint.key)
                if decision.backend is not None:  # L4 feeds outlier detection as HTTP does
                    self.ctx.outliers.failure(
                        decision.backend,
                        endpoint.key,
                        Outcome.GATEWAY_FAILURE,
                        self.ctx.state,
                        loop.time(),
                    )
                tried.add(endpoint.key)
                endpoint = table.retry_pick(decision, tried, self.ctx.state)
                if endpoint is None:
                    break
                continue
            self.ctx.outliers.success(endpoint.key)
            self._splice(upstream, endpoint)
            self._watch_idle(rule.timeouts.idle_s if rule is not None else 300.0)
            return
        self._end("upstream_connect_failure")
        if self.transport is not None:
            self.transport.abort()

    def _refuse(self, flags: str) -> None:
        """Close a connection that will not be proxied (no route, access refused)."""
        self._end(flags)
        if self.transport is not None:
            self.transport.abort()

    def _watch_idle(self, idle_s: float) -> None:
        """Close both sides once no byte moved either way for `idle_s` (checked 4x as often)."""
        self.idle_s = idle_s
        if idle_s > 0:
            loop = asyncio.get_running_loop()
            self.idle_timer = loop.call_later(idle_s / 4, self._idle_check)

    def _idle_check(self) -> None:
        peer = self.peer
        moved = self.moved + (peer.moved if peer is not None else 0)
        if self.spliced is not None:
            moved += self.spliced.moved
        if moved == self.idle_seen:
            self.idle_quiet += 1
        else:
            self.idle_quiet = 0
            self.idle_seen = moved
        if self.idle_quiet >= 4:
            if self.log is not None:
                self.log.response_flags = "idle_timeout"
            self.abort()
            return
        self.idle_timer = asyncio.get_running_loop().call_later(self.idle_s / 4, self._idle_check)

    def _splice(self, upstream: _UpstreamSide, endpoint: Any) -> None:
        if self.transport is None or self.transport.is_closing():
            if upstream.transport is not None:
                upstream.transport.close()
            return
        self.peer = upstream
        upstream.peer = self
        assert upstream.transport is not None
        if self.pending:
            upstream.transport.write(b"".join(self.pending))
            self.pending = []
        if self.log is not None:
            self.log.upstream_host = f"{endpoint.address}:{endpoint.port}"
            self.log.upstream_cluster = endpoint.cluster
        if SPLICE and not self.eof and self._hand_to_splice(upstream):
            return
        if self.eof and upstream.transport.can_write_eof():
            upstream.transport.write_eof()
        self.transport.resume_reading()

    def _hand_to_splice(self, upstream: _UpstreamSide) -> bool:
        """Move both sockets out of their transports into a `SplicedPair` (zero-copy)."""
        client_t, upstream_t = self.transport, upstream.transport
        assert client_t is not None and upstream_t is not None
        if client_t.get_write_buffer_size() or upstream_t.get_write_buffer_size():
            return False
        client_fd = client_t.get_extra_info("socket").fileno()
        upstream_fd = upstream_t.get_extra_info("socket").fileno()
        client = socket.socket(fileno=os.dup(client_fd))
        upstream_sock = socket.socket(fileno=os.dup(upstream_fd))
        client.setblocking(False)
        upstream_sock.setblocking(False)
        self.peer = upstream.peer = None
        self.spliced = SplicedPair(
            asyncio.get_running_loop(), client, upstream_sock, self._spliced_closed
        )
        client_t.abort()
        upstream_t.abort()
        self.spliced.start()
        return True

    def _spliced_closed(self) -> None:
        self.ctx.tunnels.discard(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self._end("")

    def _end(self, flags: str) -> None:
        log = self.log
        if log is not None:
            self.log = None
            log.response_flags = flags
            self.ctx.observer.end(None, log)

    def eof_received(self) -> bool:
        if self.peer is None:
            self.eof = True
            return self.task is not None  # still connecting: forward the EOF after the bytes
        return super().eof_received()

    def abort(self) -> None:
        """Cut both sides now (a drain past its deadline)."""
        if self.spliced is not None:
            self.spliced.abort()
            return
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.abort()
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.spliced is not None:
            return  # the sockets live on in the SplicedPair
        self.ctx.tunnels.discard(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._end("")
        super().connection_lost(exc)
