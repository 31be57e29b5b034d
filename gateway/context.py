"""What the data plane's protocols share inside one worker process.

A `GatewayContext` is created once per worker by the server runtime
(`gateway.runtime.server`) and handed to every accepted connection. `table` is
replaced by plain attribute assignment when a new config or registry snapshot
compiles (atomic in one event loop; a request holds its own reference to the
table it started with, so in-flight requests finish on the old one).
Everything here is touched only from the worker's event loop: no locks.
`connections` holds the HTTP proxy's open client connections (each has
`close_idle()`): the runtime counts them for `portway_active_connections` and,
once `draining` is set, closes the idle keep-alive ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.config.model import GatewaySettings
from gateway.routing.endpoints import EndpointState
from gateway.routing.table import RoutingTable
from gateway.upstream.breaker import BackendBreakers
from gateway.upstream.outlier import OutlierDetector
from gateway.upstream.pool import PoolSet


@dataclass(slots=True)
class RequestLog:
    """One finished request or connection, as the access log and metrics see it.

    Field names follow Envoy's access log; durations are seconds.
    """

    start_time: float = 0.0
    method: str = ""
    path: str = ""
    protocol: str = "HTTP/1.1"
    response_code: int = 0
    response_flags: str = ""
    bytes_received: int = 0
    bytes_sent: int = 0
    duration: float = 0.0
    upstream_host: str = ""
    upstream_cluster: str = ""
    route_name: str = ""
    backend_name: str = ""
    x_forwarded_for: str = ""
    user_agent: str = ""
    x_request_id: str = ""
    authority: str = ""
    downstream_remote_address: str = ""
    trace_id: str = ""
    attempts: int = 0
    listener: str = ""


class RequestObserver(Protocol):
    """Telemetry hooks the proxies call; implementations must be cheap and never raise.

    `begin` is called once the request head is parsed, with the lowercased
    request headers; it returns an opaque token (e.g. an OTel span) or None and
    may fill `log.trace_id`. `upstream_headers` returns extra headers to send
    upstream for this request (W3C `traceparent`/`tracestate`), as (name, value)
    byte pairs. `end` is called exactly once per begun request.
    """

    def begin(self, log: RequestLog, headers: dict[str, str]) -> Any: ...

    def upstream_headers(self, token: Any) -> list[tuple[bytes, bytes]]: ...

    def end(self, token: Any, log: RequestLog) -> None: ...

    def upstream_connect_failed(self, cluster: str, endpoint: str) -> None: ...


class NullObserver:
    """An observer that records nothing (benchmarks of the bare proxy, unit tests)."""

    def begin(self, log: RequestLog, headers: dict[str, str]) -> Any:
        return None

    def upstream_headers(self, token: Any) -> list[tuple[bytes, bytes]]:
        return []

    def end(self, token: Any, log: RequestLog) -> None:
        return None

    def upstream_connect_failed(self, cluster: str, endpoint: str) -> None:
        return None


class ClientConnection(Protocol):
    """An open client connection of the HTTP proxy, as the runtime sees it (`ctx.connections`)."""

    def close_idle(self) -> None:
        """Close now unless a request is being received or answered (drain, idle timeout)."""
        ...


class Tunnel(Protocol):
    """An open TCP / TLS-passthrough connection (`ctx.tunnels`)."""

    def abort(self) -> None:
        """Cut both sides now (past the drain deadline)."""
        ...


@dataclass(slots=True)
class GatewayContext:
    """Per-worker shared state; see module docstring for the swap rule."""

    table: RoutingTable | None
    settings: GatewaySettings
    state: EndpointState = field(default_factory=EndpointState)
    observer: RequestObserver = field(default_factory=NullObserver)
    pools: PoolSet | None = None
    """Upstream connection pools; set before the first listener starts (a connection
    keeps it: `RequestReader.pools`)."""
    outliers: OutlierDetector = field(default_factory=OutlierDetector)
    """Passive outlier detection, fed by every try's outcome (`upstream.outlier`)."""
    breakers: BackendBreakers = field(default_factory=BackendBreakers)
    """Per-backend request and retry caps (`upstream.breaker`)."""
    config_version: str = ""
    draining: bool = False
    connections: set[ClientConnection] = field(default_factory=set)
    tunnels: set[Tunnel] = field(default_factory=set)
    """Open TCP / TLS-passthrough connections (`l4.tcp.TcpProxy`, each has
    `abort()`): a drain waits for them, as for in-flight requests, then cuts them."""
