"""Plain-HTTP listeners on the native socket lane (`gateway/http/native/`).

`start_listener` serves an HTTP listener here when the lane is built (it is an
optional C extension: without a C compiler the event loop's transports serve
every listener) and `settings.nativeSockets` is on. One `Lane` per event
loop, watched by the loop (`add_reader` on its epoll fd): its sockets and the
loop's share one thread and one wait. HTTPS and PROXY-protocol listeners stay
on the loop's transports (their bytes pass through TLS or a header first).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from gateway.config.model import Listener
from gateway.context import GatewayContext
from gateway.upstream.pool import PoolSet

try:
    from gateway.http import native_lane
except ImportError:  # not built: no C compiler at install time
    native_lane = None  # type: ignore[assignment]


def lane_built() -> bool:
    """Whether the native lane's extension is installed."""
    return native_lane is not None


def loop_lane(pools: PoolSet, loop: asyncio.AbstractEventLoop) -> Any:
    """The loop's lane (`pools.lane`), made and watched by the loop on first use."""
    if pools.lane is None:
        assert native_lane is not None
        lane = native_lane.Lane(pools.lane_closed, max_idle=pools.max_idle)
        loop.add_reader(lane.fileno(), lane.run)
        pools.lane = lane
    return pools.lane


class LaneServer:
    """What `start_listener` returns for a lane listener: `close` stops accepting (the
    connections already accepted finish), as `asyncio.Server.close` does."""

    def __init__(self, lane: Any, sockets: list[socket.socket]) -> None:
        self.lane = lane
        self.sockets = sockets

    def close(self) -> None:
        for sock in self.sockets:
            self.lane.unserve(sock)
            sock.close()
        self.sockets = []

    def is_serving(self) -> bool:
        return bool(self.sockets)

    async def wait_closed(self) -> None:
        return None


def bind(listener: Listener, *, reuse_port: bool, backlog: int) -> list[socket.socket]:
    """Listening sockets for the listener's address and port, as `loop.create_server`
    binds them (every address the name resolves to; IPv6 sockets IPv6 only)."""
    host = listener.address or None
    infos = socket.getaddrinfo(
        host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    seen: set[tuple[Any, ...]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def serve(
    ctx: GatewayContext,
    factory: Callable[[], Any],
    listener: Listener,
    *,
    reuse_port: bool,
    backlog: int,
    sock: socket.socket | None = None,
) -> LaneServer:
    """Accept on the listener (or the inherited `sock`) through the loop's lane."""
    pools = ctx.pools
    assert pools is not None
    lane = loop_lane(pools, asyncio.get_running_loop())
    if sock is not None:
        sock.listen(backlog)  # an inherited socket is bound; listening is idempotent
        sock.setblocking(False)
        sockets = [sock]
    else:
        sockets = bind(listener, reuse_port=reuse_port, backlog=backlog)
    settings = ctx.settings
    for s in sockets:
        lane.serve(
            s,
            factory,
            max_line=settings.max_request_line_bytes,
            max_headers=settings.max_headers,
            max_header_bytes=settings.max_header_bytes,
        )
    return LaneServer(lane, sockets)
