"""Accepting sockets: one asyncio server per configured listener.

`start_listener` picks the protocol factory for the listener's protocol
(HTTP and HTTPS → `http.proxy.HttpProxy`, TLS passthrough and TCP →
`l4.tcp.TcpProxy`), sets up TLS termination for HTTPS (`tls.ServerTls`, kept in `ctx.server_tls`
for reloads)
and the worker's upstream pools when the runtime did not, and binds with
SO_REUSEPORT when asked (one socket per worker process, the kernel spreads
connections) or serves an inherited socket.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from gateway.config.model import Listener, ListenerProtocol
from gateway.context import GatewayContext
from gateway.http.proxy import HttpProxy
from gateway.l4.tcp import TcpProxy
from gateway.runtime.tls import ServerTls
from gateway.upstream.pool import PoolSet

BACKLOG = 4096


async def start_listener(
    ctx: GatewayContext,
    listener: Listener,
    *,
    reuse_port: bool,
    sock: socket.socket | None = None,
) -> asyncio.Server:
    """Start accepting on `listener`; the caller closes the returned server."""
    loop = asyncio.get_running_loop()
    if ctx.pools is None:
        ctx.pools = PoolSet(loop)
    name = listener.name
    kind = listener.protocol
    ssl_context = None
    factory: Callable[[], Any]
    if kind is ListenerProtocol.HTTP:
        factory = lambda: HttpProxy(ctx, name)  # noqa: E731
    elif kind is ListenerProtocol.HTTPS:
        if listener.tls is None:
            raise ValueError(f"listener {name}: HTTPS needs a tls block")
        tls = ServerTls(name, listener.tls)
        ctx.server_tls[name] = tls
        ssl_context = tls.front
        factory = lambda: HttpProxy(ctx, name, proto=b"https", tls=tls)  # noqa: E731
    elif kind is ListenerProtocol.TLS:
        factory = lambda: TcpProxy(ctx, name, peek_sni=True)  # noqa: E731
    else:
        factory = lambda: TcpProxy(ctx, name)  # noqa: E731
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
