"""What `portway doctor`'s probes found about one Service: the input of `doctor.judge`.

The probes (controller/probes.py, all the I/O) fill one `Facts`; the judge
(controller/doctor.py, pure) reads nothing else. Keeping the facts apart from
both makes that contract one small module: a test builds `Facts` by hand and
judges them with no cluster, and a new probe is a new field here plus a step
there. An empty `error` means the probe got an answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.derive import ServiceDerivation
from controller.network_policy import PolicyFinding
from controller.placement import Eligibility
from portway.model import Protocol, ServiceRecord


@dataclass(frozen=True, slots=True)
class TcpProbe:
    node: str
    address: str
    port: int
    error: str = ""
    elapsed_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class HealthzProbe:
    """kube-proxy's answer on healthCheckNodePort: 200 with localEndpoints > 0, else 503."""

    node: str
    address: str
    port: int
    status: int | None = None
    local_endpoints: int | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class DnsProbe:
    node: str
    addresses: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True)
class RegistryFacts:
    backend: str
    record: ServiceRecord | None = None
    other_clusters: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True)
class GatewayEndpoint:
    backend: str
    cluster: str
    address: str
    port: int
    ready: bool


@dataclass(frozen=True, slots=True)
class GatewayFacts:
    url: str
    endpoints: tuple[GatewayEndpoint, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True)
class Facts:
    """What the probes found; None for a probe that was not asked for."""

    namespace: str
    name: str
    cluster: str
    now: float
    kube_error: str = ""
    derivation: ServiceDerivation | None = None
    policies: tuple[PolicyFinding, ...] | None = None
    policy_note: str = ""
    tcp: tuple[TcpProbe, ...] = ()
    healthz: tuple[HealthzProbe, ...] = ()
    dns: tuple[DnsProbe, ...] = ()
    registry: RegistryFacts | None = None
    gateway: GatewayFacts | None = None

    @property
    def record(self) -> ServiceRecord | None:
        """The record derive() would publish now, which the registry and gateway should match."""
        return self.derivation.record if self.derivation is not None else None


def eligible_targets(
    d: ServiceDerivation, rec: ServiceRecord | None
) -> Sequence[tuple[str, str, int]]:
    """(node, address, nodePort) the nodeport probe connects to: eligible nodes x TCP ports."""
    if rec is None:
        return ()
    return [
        (v.node, v.address, p.node_port)
        for v in d.nodes
        if v.eligibility is Eligibility.ELIGIBLE
        for p in rec.ports
        if p.protocol is Protocol.TCP
    ]
