"""Compiled endpoints and the live state the request path reads about them.

`Endpoint` is a value in the compiled table. `EndpointState` holds what changes
between table compiles (health, ejection, in-flight counts); it is owned by the
event loop of one worker, mutated only from that loop (no locks), and passed
into the pure routing functions as an input, never read as a global. Keys are
`Endpoint.key`, stable across compiles, so state survives a table swap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from gateway.routing.affinity import AffinityState


@dataclass(frozen=True, slots=True)
class Site:
    """Where an endpoint runs: its node, and the node's zone and region.

    These are facts of the node, not of the endpoint: every endpoint on one
    node shares one `Site` (the compiler interns them), so 500,000 endpoints
    on 250 nodes hold 250 of these instead of three names each.
    """

    region: str = ""
    zone: str = ""
    node: str = ""


NOWHERE: Final = Site()
"""The site of an endpoint that names none (a static endpoint without region and zone)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One NodePort (or static) endpoint: where a connection actually goes.

    `ready` is the node's readiness as its cluster published it. A NotReady
    node stays in the table, never picked outside panic mode, so its
    locality level's health share drops and traffic spills as Envoy's
    priority rule says (a node gone NotReady is capacity lost, not a smaller
    level at full health).

    Half a million of these make a fleet-sized table, so each holds only what
    the request path reads (address, port, cluster, key, weight, ready) and what
    differs per service (the health check NodePort); where the node is (`site`:
    region, zone, node name) is shared by reference. One costs 96 bytes (112
    in the mypyc build) plus its key string (80 allocated for a key like
    `east-0/10.1.0.7:31234`), and 16-20 more as a pointer in its backend's
    endpoint and level tuples.
    """

    address: str
    port: int
    cluster: str
    site: Site = NOWHERE
    weight: int = 1
    health_check_port: int | None = None
    key: str = ""
    ready: bool = True

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", endpoint_key(self.cluster, self.address, self.port))

    @property
    def region(self) -> str:
        return self.site.region

    @property
    def zone(self) -> str:
        return self.site.zone

    @property
    def node(self) -> str:
        return self.site.node

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by `routes list/explain --json`, the admin API and table equality."""
        site = self.site
        return {
            "key": self.key,
            "address": self.address,
            "port": self.port,
            "cluster": self.cluster,
            "region": site.region,
            "zone": site.zone,
            "node": site.node,
            "weight": self.weight,
            "healthCheckPort": self.health_check_port,
            "ready": self.ready,
        }


def endpoint_key(cluster: str, address: str, port: int) -> str:
    """`cluster/address:port`, with brackets around IPv6 addresses."""
    host = f"[{address}]" if ":" in address else address
    return f"{cluster}/{host}:{port}"


RAMP_FLOOR: Final = 0.1
"""What a ramping endpoint counts for at first: never nothing, so a level whose
only endpoints are ramping still takes traffic when no other level can."""


@dataclass(slots=True)
class EndpointState:
    """Live facts about endpoints, by `Endpoint.key`.

    `unhealthy` holds keys failed by active health checks, `ejected` keys
    ejected by outlier detection (until the monotonic time stored), and
    `in_flight` the number of requests currently sent to each endpoint.
    `generation` changes whenever availability changes, so the routing core
    may cache per-backend locality decisions keyed on it; mutate availability
    through the methods, never the sets directly.

    `returning` holds endpoints back in rotation since the monotonic time
    stored (recovered, let back from ejection, or a cluster whose record
    reappeared): a locality level counts each as `ramp` of an endpoint, from
    0 to 1 over its backend's `slowStart`, as of `clock` (the driver moves
    the clock and the generation while anything ramps), so traffic returns
    to a recovered level gradually instead of all at once.
    """

    unhealthy: set[str] = field(default_factory=set)
    ejected: dict[str, float] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    draining: set[str] = field(default_factory=set)
    generation: int = 0
    affinity: AffinityState = field(default_factory=AffinityState)
    returning: dict[str, float] = field(default_factory=dict)
    clock: float = 0.0

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

    def start_ramp(self, key: str, since: float) -> None:
        """`key` is back in rotation since `since`: count it in gradually (slow start)."""
        self.returning[key] = since
        self.generation += 1

    def advance(self, now: float, done_before: float) -> None:
        """Move the ramp clock to `now`; forget ramps that started before `done_before`."""
        if not self.returning:
            return
        for key in [k for k, t in self.returning.items() if t < done_before]:
            del self.returning[key]
        self.clock = now
        self.generation += 1

    def ramp(self, key: str, slow_start_s: float) -> float:
        """How much of an endpoint `key` counts for (1.0 unless it is ramping)."""
        since = self.returning.get(key)
        if since is None or slow_start_s <= 0.0:
            return 1.0
        return min(1.0, max(RAMP_FLOOR, (self.clock - since) / slow_start_s))

    def available(self, key: str) -> bool:
        """Healthy, not ejected and not drained: may take new requests."""
        return key not in self.unhealthy and key not in self.ejected and key not in self.draining
