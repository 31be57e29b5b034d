"""Compiled endpoints and the live state the request path reads about them.

`Endpoint` is a value in the compiled table. `EndpointState` holds what changes
between table compiles (health, ejection, in-flight counts); it is owned by the
event loop of one worker, mutated only from that loop (no locks), and passed
into the pure routing functions as an input, never read as a global. Keys are
`Endpoint.key`, stable across compiles, so state survives a table swap.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One NodePort (or static) endpoint: where a connection actually goes."""

    address: str
    port: int
    cluster: str
    region: str = ""
    zone: str = ""
    node: str = ""
    weight: int = 1
    health_check_port: int | None = None
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", endpoint_key(self.cluster, self.address, self.port))


def endpoint_key(cluster: str, address: str, port: int) -> str:
    """`cluster/address:port`, with brackets around IPv6 addresses."""
    host = f"[{address}]" if ":" in address else address
    return f"{cluster}/{host}:{port}"


@dataclass(slots=True)
class EndpointState:
    """Live facts about endpoints, by `Endpoint.key`.

    `unhealthy` holds keys failed by active health checks, `ejected` keys
    ejected by outlier detection (until the monotonic time stored), and
    `in_flight` the number of requests currently sent to each endpoint.
    """

    unhealthy: set[str] = field(default_factory=set)
    ejected: dict[str, float] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    draining: set[str] = field(default_factory=set)

    def available(self, key: str) -> bool:
        """Healthy, not ejected and not drained: may take new requests."""
        return key not in self.unhealthy and key not in self.ejected and key not in self.draining
