"""A drill scenario: simulated clusters, a traffic profile, a timeline of faults, expectations.

The YAML a platform team writes (camelCase keys, durations like `250ms`,
`3s`) and its Python shape: frozen pydantic dataclasses, validated for shape
here and for cross references in `portway.drill.loader`, which also adds
file:line:column to every problem. Times on the timeline (`at`, `until`) are
seconds from the start of traffic.

Every field is enforced by the drill runner; a registry type the runner
cannot drive yet (Consul) is refused by the loader as "not supported yet"
rather than accepted and ignored.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from gateway.config.values import CONFIG, Duration, IPAddress, Name, Port


class FaultKind(enum.Enum):
    """What a fault does; see `portway.drill.faults` for how each is injected."""

    KILL_ENDPOINTS = "kill-endpoints"
    STOP_CONTROLLER = "stop-controller"
    BLACK_HOLE = "black-hole"
    SLOW = "slow"
    REGISTRY_OUTAGE = "registry-outage"
    ROTATE_CERTIFICATE = "rotate-certificate"
    SHIFT_WEIGHTS = "shift-weights"


class Window(enum.Enum):
    """Stretches of a drill: before the first fault, while any fault is on, after the last."""

    BEFORE = "before"
    DURING = "during"
    AFTER = "after"


@dataclass(frozen=True, slots=True, config=CONFIG)
class SimNodeSpec:
    """A node of a simulated cluster: a loopback address where its NodePorts open."""

    name: Name
    address: IPAddress
    zone: str


@dataclass(frozen=True, slots=True, config=CONFIG)
class SimServiceSpec:
    """A Service exported by the cluster; `label` is what answers say in `x-served-by`."""

    namespace: Name
    name: Name
    node_port: Port
    nodes: tuple[str, ...] = ()
    label: str = ""


@dataclass(frozen=True, slots=True, config=CONFIG)
class ClusterSpec:
    """A simulated cluster: its nodes and services; its controller publishes them."""

    name: Name
    region: str
    nodes: tuple[SimNodeSpec, ...] = Field(min_length=1)
    services: tuple[SimServiceSpec, ...] = Field(min_length=1)


@dataclass(frozen=True, slots=True, config=CONFIG)
class RegistrySpec:
    """Where the simulated controllers publish (files, or etcd: a member the drill runs
    where its gateway config's registry endpoint points), and their records' TTL."""

    type: str = "files"
    ttl_s: Duration = Field(default=2.0, alias="ttl")


@dataclass(frozen=True, slots=True, config=CONFIG)
class TrafficProfile:
    """Client traffic: `concurrency` clients, at most `rate` requests/s in total when set."""

    url: str
    duration_s: Duration = Field(alias="duration")
    concurrency: int = Field(default=4, ge=1, le=256)
    rate: float | None = Field(default=None, gt=0)
    methods: tuple[str, ...] = Field(default=("GET",), min_length=1)
    paths: tuple[str, ...] = Field(default=("/",), min_length=1)
    sticky_share: float = Field(default=0.0, ge=0.0, le=1.0)
    timeout_s: Duration = Field(default=5.0, alias="timeout")


@dataclass(frozen=True, slots=True, config=CONFIG)
class Fault:
    """One fault on the timeline, from `at` until `until` (to the end when unset).

    Targets: `cluster` (and optionally `service`, `nodes`) for the node and
    controller faults; `route`/`rule`/`weights`/`canaryPercent` for
    shift-weights; `listener` for rotate-certificate. `delay` is the slow
    fault's added latency; `publishNotReady` makes kill-endpoints' controller
    notice and publish the nodes NotReady (by default it has not noticed yet).
    """

    kind: FaultKind
    at_s: Duration = Field(alias="at")
    until_s: Duration | None = Field(default=None, alias="until")
    cluster: str | None = None
    service: str | None = None
    nodes: tuple[str, ...] = ()
    delay_s: Duration | None = Field(default=None, alias="delay")
    publish_not_ready: bool = False
    route: str | None = None
    rule: int = Field(default=0, ge=0)
    weights: dict[str, int] | None = None
    canary_percent: float | None = Field(default=None, ge=0, le=100)
    listener: str | None = None


@dataclass(frozen=True, slots=True, config=CONFIG)
class ShareBound:
    """The share of answered requests served by `label` lies in [min, max]: in a `window`,
    or from `from` to `to` (seconds of the drill), which then replace the window."""

    label: str
    window: Window | None = None
    from_s: Duration | None = Field(default=None, alias="from")
    to_s: Duration | None = Field(default=None, alias="to")
    min: float = Field(default=0.0, ge=0.0, le=1.0)
    max: float = Field(default=1.0, ge=0.0, le=1.0)


@dataclass(frozen=True, slots=True, config=CONFIG)
class Expectations:
    """What users must have seen; each unset limit is not judged.

    `maxFailoverSeconds`: from a fault's start to the last request that failed,
    went to the faulted target, or was slower than `slowRequest` (default:
    5 x the p99 before the first fault, at least 50 ms). `maxFailbackSeconds`:
    from a fault's end to the first request its target serves again.
    `maxCertificateRotationSeconds`: from a rotation to the first new TLS
    handshake that presents the new certificate.
    """

    max_failed_requests: int | None = Field(default=None, ge=0)
    max_failover_s: Duration | None = Field(default=None, alias="maxFailoverSeconds")
    max_failback_s: Duration | None = Field(default=None, alias="maxFailbackSeconds")
    max_p99_in_fault_ms: float | None = Field(default=None, gt=0, alias="maxP99InFaultMs")
    max_p99_after_fault_ms: float | None = Field(default=None, gt=0, alias="maxP99AfterFaultMs")
    allowed_regions: tuple[str, ...] = ()
    max_rotation_s: Duration | None = Field(default=None, alias="maxCertificateRotationSeconds")
    shares: tuple[ShareBound, ...] = ()
    slow_request_s: Duration | None = Field(default=None, alias="slowRequest")


@dataclass(frozen=True, slots=True, config=CONFIG)
class GatewaySpec:
    """The gateway config the drill starts (a path relative to the scenario file).

    Its admin block says where the drill reads the gateway's state; its files
    registry path, relative to the gateway's working directory (the drill's),
    is where the simulated controllers publish.
    """

    config: str


@dataclass(frozen=True, slots=True, config=CONFIG)
class Scenario:
    """A whole drill; `version` is 1."""

    name: Name
    gateway: GatewaySpec
    traffic: TrafficProfile
    clusters: tuple[ClusterSpec, ...] = Field(min_length=1)
    version: Literal[1] = 1
    description: str = ""
    registry: RegistrySpec = RegistrySpec()
    faults: tuple[Fault, ...] = ()
    expect: Expectations = Expectations()


def scaled(scenario: Scenario, duration_s: float) -> Scenario:
    """The same drill squeezed or stretched to `duration_s`: every time on the timeline
    scales with it; limits (failover, TTL) do not, so a drill scaled down may fail them."""
    factor = duration_s / scenario.traffic.duration_s

    def times(value: float | None) -> float | None:
        return None if value is None else value * factor

    # pydantic's mypy plugin types __init__ by alias; field names are accepted
    # too (populate_by_name), which is what dataclasses.replace passes.
    faults = tuple(
        dataclasses.replace(f, at_s=f.at_s * factor, until_s=times(f.until_s))  # type: ignore[call-arg]
        for f in scenario.faults
    )
    shares = tuple(
        dataclasses.replace(b, from_s=times(b.from_s), to_s=times(b.to_s))  # type: ignore[call-arg]
        for b in scenario.expect.shares
    )
    traffic = dataclasses.replace(scenario.traffic, duration_s=duration_s)  # type: ignore[call-arg]
    expect = dataclasses.replace(scenario.expect, shares=shares)
    return dataclasses.replace(scenario, traffic=traffic, faults=faults, expect=expect)
