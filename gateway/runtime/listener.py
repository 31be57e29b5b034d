"""Accepting sockets: one asyncio server per configured listener.

`start_listener` picks the protocol factory for the listener's protocol
(HTTP and HTTPS → `http.proxy.HttpProxy`, TLS passthrough and TCP →
`l4.tcp.TcpProxy`), sets up TLS termination for HTTPS (`tls.ServerTls`, kept
in the caller's `certificates` for reloads and the expiry metric) and the
worker's upstream pools when the runtime did not, and binds with
SO_REUSEPORT when asked (one socket per worker process, the kernel spreads
connections) or serves an inherited socket.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from gateway.config.model import Listener, ListenerProtocol
from gateway.config.ports import shared_tls, socket_key
from gateway.context import GatewayContext
from gateway.http.filters.access import access_check
from gateway.http.lane_proxy import LaneProxy
from gateway.http.proxy import HttpProxy
from gateway.l4.proxy_protocol import ProxyProtocolError, parse_proxy_header
from gateway.l4.tcp import TcpProxy
from gateway.runtime import native_listener
from gateway.runtime.tls import ServerTls
from gateway.upstream.pool import PoolSet

BACKLOG = 4096
PROXY_HEADER_TIMEOUT_S = 5.0


class ProxyProtocolGate(asyncio.Protocol):
    """The first protocol of a connection on a `proxyProtocol` listener.

    Reads the PROXY header (`l4.proxy_protocol`), then hands the connection to
    the listener's real protocol with the carried client address (set before
    its `connection_made`) and the bytes that followed the header. A
    connection that sends no valid header within `PROXY_HEADER_TIMEOUT_S` is
    closed. Not offered on HTTPS listeners: the balancer may send the
    ClientHello in the same segment as the header, and asyncio's TLS cannot
    be handed bytes already read.
    """

    def __init__(self, inner: Callable[[], Any]) -> None:
        self.inner = inner
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(PROXY_HEADER_TIMEOUT_S, transport.abort)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        try:
            parsed = parse_proxy_header(self.buffer)
        except ProxyProtocolError:
            self.transport.abort()
            return
        if parsed is None:
            return
        header, used = parsed
        rest = self.buffer[used:]
        self.buffer = b""
        if self.timer is not None:
            self.timer.cancel()
        protocol = self.inner()
        protocol.client_ip = header.source
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        if rest and not self.transport.is_closing():
            protocol.data_received(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


async def start_listener(
    ctx: GatewayContext,
    listener: Listener,
    *,
    reuse_port: bool,
    sock: socket.socket | None = None,
    certificates: dict[str, ServerTls] | None = None,
    sharing: tuple[Listener, ...] = (),
) -> asyncio.AbstractServer | native_listener.LaneServer:
    """Start accepting on `listener`; the caller closes the returned server.

    An HTTPS listener's `ServerTls` is put in `certificates` under its name.
    `sharing`: the other listeners on the same address:port (`config.ports`):
    the socket then serves them all, named by its `address:port` key (in
    `certificates` too, with every listener's certificates), and each request
    goes to the listener its host selects (`RoutingTable.listener_for`).
    """
    loop = asyncio.get_running_loop()
    if ctx.pools is None:
        ctx.pools = PoolSet(loop)
    name = socket_key(listener) if sharing else listener.name
    shared = bool(sharing)
    kind = listener.protocol
    ssl_context = None
    access = access_check(listener.access) if listener.access is not None else None
    body = listener.max_request_body_bytes
    native = (
        kind is ListenerProtocol.HTTP
        and not listener.proxy_protocol
        and ctx.settings.native_sockets
        and native_listener.lane_built()
    )
    factory: Callable[[], Any]
    if kind is ListenerProtocol.HTTP:
        proxy = LaneProxy if native else HttpProxy
        factory = lambda: proxy(  # noqa: E731
            ctx, name, access=access, max_body_bytes=body, shared=shared
        )
    elif kind is ListenerProtocol.HTTPS:
        tls_config = shared_tls((listener, *sharing))
        if tls_config is None:
            raise ValueError(f"listener {name}: HTTPS needs a tls block")
        tls = ServerTls(name, tls_config)
        if certificates is not None:
            certificates[name] = tls
        ssl_context = tls.front
        factory = lambda: HttpProxy(  # noqa: E731
            ctx, name, proto=b"https", tls=tls, access=access, max_body_bytes=body, shared=shared
        )
    elif kind is ListenerProtocol.TLS:
        factory = lambda: TcpProxy(ctx, name, peek_sni=True, access=access)  # noqa: E731
    else:
        factory = lambda: TcpProxy(ctx, name, access=access)  # noqa: E731
    if native:
        return native_listener.serve(
            ctx, factory, listener, reuse_port=reuse_port, backlog=BACKLOG, sock=sock
        )
    if listener.proxy_protocol:  # not on HTTPS listeners (config validation)
        inner = factory
        factory = lambda: ProxyProtocolGate(inner)  # noqa: E731
    if sock is not None:
        # HttpProxy is an asyncio protocol by duck typing only (see gateway.compiled)
        return await loop.create_server(
            factory,  # type: ignore[arg-type]
            sock=sock,
            ssl=ssl_context,
            backlog=BACKLOG,
        )
    return await loop.create_server(
        factory,  # type: ignore[arg-type]
        listener.address,
        listener.port,
        ssl=ssl_context,
        reuse_address=True,
        reuse_port=reuse_port,
        backlog=BACKLOG,
    )
