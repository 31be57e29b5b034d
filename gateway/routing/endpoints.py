"""Compiled endpoints and the live state the request path reads about them.

`Endpoint` is a value in the compiled table. `EndpointState` holds what changes
between table compiles (health, ejection, in-flight counts); it is owned by the
event loop of one worker, mutated only from that loop (no locks), and passed
into the pure routing functions as an input, never read as a global. Keys are
`Endpoint.key`, stable across compiles, so state survives a table swap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.routing.affinity import AffinityState


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One NodePort (or static) endpoint: where a connection actually goes.

    `ready` is the node's readiness as its cluster published it. A NotReady
    node stays in the table, never picked outside panic mode, so its
    locality level's health share drops and traffic spills as Envoy's
    priority rule says (a node gone NotReady is capacity lost, not a smaller
    level at full health).
    """

    address: str
    port: int
    cluster: str
    region: str = ""
    zone: str = ""
    node: str = ""
    weight: int = 1
    health_check_port: int | None = None
    key: str = ""
    ready: bool = True

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", endpoint_key(self.cluster, self.address, self.port))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by `routes list/explain --json`, the admin API and table equality."""
        return {
            "key": self.key,
            "address": self.address,
            "port": self.port,
            "cluster": self.cluster,
            "region": self.region,
            "zone": self.zone,
            "node": self.node,
            "weight": self.weight,
            "healthCheckPort": self.health_check_port,
            "ready": self.ready,
        }


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
    `generation` changes whenever availability changes, so the routing core
    may cache per-backend locality decisions keyed on it; mutate availability
    through the methods, never the sets directly.
    """

    unhealthy: set[str] = field(default_factory=set)
    ejected: dict[str, float] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    draining: set[str] = field(default_factory=set)
    generation: int = 0
    affinity: AffinityState = field(default_factory=AffinityState)

    def set_unhealthy(self, key: str, unhealthy: bool) -> None:
        """Mark an endpoint failed/passed by active health checks."""
        if unhealthy != (key in self.unhealthy):
            (self.unhealthy.add if unhealthy else self.unhealthy.discard)(key)
            self.generation += 1

    def eject(self, key: str, until: float) -> None:
        """Outlier detection: keep `key` out of rotation until monotonic time `until`."""
        self.ejected[key] = until
        self.generation += 1

    def uneject(self, key: str) -> None:
        if self.ejected.pop(key, None) is not None:
            self.generation += 1

    def set_draining(self, key: str, draining: bool) -> None:
        if draining != (key in self.draining):
            (self.draining.add if draining else self.draining.discard)(key)
            self.generation += 1

    def available(self, key: str) -> bool:
        """Healthy, not ejected and not drained: may take new requests."""
        return key not in self.unhealthy and key not in self.ejected and key not in self.draining
