"""Kubernetes objects -> the registry records one cluster publishes (pure).

Theory of operation. `derive(settings, services, nodes, slices, now)` answers,
for every Service, "what would kube-proxy serve on its NodePorts, and what
does the gateway need to know about it?", with the reason behind every
no. It imports no asyncio and no client: the watch cache hands it plain
values (controller/objects.py) and publishes what comes out.

A Service is published when it is exported (annotation `portway.io/export:
"true"`, or a ServiceExport exists) and of type NodePort or LoadBalancer; any
other Service gets an outcome and a reason instead of a record. Its ports are
checked against the NodePort ranges (controller/nodeports.py); a port in
violation is left out, and a Service left with no port is not published.

Where a published Service's traffic may land is controller/placement.py:
every node gets a verdict per Service, by the rules kube-proxy serves
NodePorts by (cordoned, excluded or being deleted, no usable address, no
ready local endpoint under Local: left out; NotReady: published as
unavailable), and the record's zones and region follow from the nodes
published. Records are deterministic: nodes sorted by name, zones sorted.

Weight and canary hints are not derived from annotations: the record has no
field for them and the gateway takes weights and canaries from its routing
config, so a hint would be published and then ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.nodeports import PortViolation, check_health_check_port, check_ports
from controller.objects import (
    ClusterSettings,
    EndpointSliceInfo,
    NodeInfo,
    ServiceInfo,
    ServiceType,
)
from controller.placement import (
    NodeVerdict,
    Placement,
    assess_node,
    count_endpoints,
    node_verdicts,
    place,
)
from portway.model import (
    RecordError,
    ServiceKey,
    ServicePort,
    ServiceRecord,
    TrafficPolicy,
)

_PUBLISHABLE_TYPES = (ServiceType.NODE_PORT, ServiceType.LOAD_BALANCER)


class Outcome(enum.Enum):
    """What derivation decided for one Service."""

    PUBLISHED = "published"
    NOT_EXPORTED = "not exported"
    UNSUPPORTED_TYPE = "unsupported type"
    NO_VALID_PORTS = "no valid ports"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class ServiceDerivation:
    """Everything derivation decided about one Service, record included when published."""

    namespace: str
    name: str
    outcome: Outcome
    reason: str
    record: ServiceRecord | None = None
    nodes: tuple[NodeVerdict, ...] = ()
    violations: tuple[PortViolation, ...] = ()
    endpoints_total: int = 0
    endpoints_ready: int = 0

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Derivation:
    """The result for a whole cluster: one entry per Service, sorted by namespace/name."""

    services: tuple[ServiceDerivation, ...]

    def records(self) -> dict[ServiceKey, ServiceRecord]:
        """What should be in the registry for this cluster, keyed like the registry."""
        return {s.record.key: s.record for s in self.services if s.record is not None}

    def violations(self) -> tuple[PortViolation, ...]:
        return tuple(v for s in self.services for v in s.violations)

    def service(self, namespace: str, name: str) -> ServiceDerivation | None:
        for s in self.services:
            if s.namespace == namespace and s.name == name:
                return s
        return None


class ClusterView:
    """Nodes assessed once and slices indexed by Service, to derive many Services cheaply."""

    __slots__ = ("_cluster_placement", "_nodes", "_settings", "_slices")

    def __init__(
        self,
        settings: ClusterSettings,
        nodes: Iterable[NodeInfo],
        slices: Iterable[EndpointSliceInfo],
    ) -> None:
        self._settings = settings
        self._nodes = tuple(assess_node(settings, n) for n in sorted(nodes, key=lambda n: n.name))
        index: dict[tuple[str, str], list[EndpointSliceInfo]] = {}
        for s in slices:
            index.setdefault((s.namespace, s.service_name), []).append(s)
        self._slices = index
        self._cluster_placement: Placement | None = None

    def derive_service(
        self, service: ServiceInfo, now: float, *, verdicts_always: bool = False
    ) -> ServiceDerivation:
        """Derive one Service. Node verdicts are computed for published Services, or for
        every Service of a publishable type when `verdicts_always` (what doctor wants)."""
        settings = self._settings
        slices = self._slices.get((service.namespace, service.name), ())
        total, ready, local = count_endpoints(slices)
        typed = service.type in _PUBLISHABLE_TYPES
        exported = is_exported(settings, service)

        def unpublished(
            outcome: Outcome, reason: str, violations: tuple[PortViolation, ...] = ()
        ) -> ServiceDerivation:
            with_verdicts = typed and (verdicts_always or exported)
            return ServiceDerivation(
                service.namespace,
                service.name,
                outcome,
                reason,
                nodes=self._verdicts(service, local) if with_verdicts else (),
                violations=violations,
                endpoints_total=total,
                endpoints_ready=ready,
            )

        if not exported:
            return unpublished(
                Outcome.NOT_EXPORTED,
                f'neither annotated {settings.export_annotation}: "true" nor ServiceExport-ed',
            )
        if not typed:
            return unpublished(
                Outcome.UNSUPPORTED_TYPE,
                f"type {service.type.value} opens no NodePort (NodePort or LoadBalancer needed)",
            )
        ports, violations = check_ports(settings, service)
        local_policy = service.external_traffic_policy is TrafficPolicy.LOCAL
        hc_violation = check_health_check_port(settings, service) if local_policy else None
        if hc_violation is not None:
            violations += (hc_violation,)
        if not ports:
            return unpublished(
                Outcome.NO_VALID_PORTS,
                "no port with a nodePort inside the allowed ranges",
                violations,
            )
        placement = self._placement(service, local)
        verdicts = placement.verdicts
        try:
            record = ServiceRecord(
                cluster=settings.cluster,
                namespace=service.namespace,
                service=service.name,
                region=placement.region,
                zones=placement.zones,
                ports=tuple(
                    ServicePort(p.name, p.port, p.node_port or 0, p.protocol) for p in ports
                ),
                nodes=placement.nodes,
                external_traffic_policy=service.external_traffic_policy,
                health_check_node_port=(
                    service.health_check_node_port
                    if local_policy and hc_violation is None
                    else None
                ),
                session_affinity=service.session_affinity,
                session_affinity_timeout_s=service.session_affinity_timeout_s,
                node_port_range=(settings.node_port_range.first, settings.node_port_range.last),
                published_at=now,
            )
        except RecordError as exc:
            return ServiceDerivation(
                service.namespace,
                service.name,
                Outcome.INVALID,
                f"the record would be refused: {exc}",
                nodes=verdicts,
                violations=violations,
                endpoints_total=total,
                endpoints_ready=ready,
            )
        return ServiceDerivation(
            service.namespace,
            service.name,
            Outcome.PUBLISHED,
            placement.summary,
            record=record,
            nodes=verdicts,
            violations=violations,
            endpoints_total=total,
            endpoints_ready=ready,
        )

    def _placement(self, service: ServiceInfo, local: Mapping[str, int]) -> Placement:
        """Verdicts and published nodes; under policy Cluster the same for every Service,
        so computed once per view (a cluster's worth of Services shares one tuple)."""
        if service.external_traffic_policy is TrafficPolicy.LOCAL:
            return place(self._settings, self._nodes, self._verdicts(service, local))
        if self._cluster_placement is None:
            verdicts = self._verdicts(service, local)
            self._cluster_placement = place(self._settings, self._nodes, verdicts)
        return self._cluster_placement

    def _verdicts(self, service: ServiceInfo, local: Mapping[str, int]) -> tuple[NodeVerdict, ...]:
        is_local = service.external_traffic_policy is TrafficPolicy.LOCAL
        return node_verdicts(self._nodes, local_policy=is_local, local=local)


def derive(
    settings: ClusterSettings,
    services: Iterable[ServiceInfo],
    nodes: Iterable[NodeInfo],
    slices: Iterable[EndpointSliceInfo],
    now: float,
) -> Derivation:
    """Derive every Service of the cluster; `now` becomes each record's publishedAt."""
    view = ClusterView(settings, nodes, slices)
    ordered = sorted(services, key=lambda s: (s.namespace, s.name))
    return Derivation(tuple(view.derive_service(s, now) for s in ordered))


def is_exported(settings: ClusterSettings, service: ServiceInfo) -> bool:
    """Annotated with the export annotation set to "true", or ServiceExport-ed."""
    value = service.annotations.get(settings.export_annotation, "")
    return service.service_export or value.strip().lower() == "true"
