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

Every node gets a verdict per published Service, checked in this order:

1. cordoned (spec.unschedulable), excluded by the label
   `node.kubernetes.io/exclude-from-external-load-balancers`, or tainted
   `ToBeDeletedByClusterAutoscaler`: not published;
2. no address of a preferred type (settings.address_preference, default
   ExternalIP then InternalIP; only addresses that parse as IPs count): not
   published;
3. externalTrafficPolicy Local and no ready, non-terminating endpoint of the
   Service on the node (EndpointSlice nodeName + conditions): not published,
   since kube-proxy drops such traffic and its healthCheckNodePort answers 503;
4. Ready condition not True: published with `ready=False`;
5. otherwise eligible: published with `ready=True`.

Why NotReady nodes are published (rule 4): the gateway's compiler keeps a
NotReady node in its locality level as unavailable, so the level's healthy
share drops and traffic spills to the next priority the way Envoy's does;
the node is never picked outside panic mode. Leaving it out would make a
zone with two of three nodes NotReady look fully healthy. The set of nodes
the gateway routes to in normal operation, the `ready=True` ones, is exactly
kube-proxy's serving set.

Under Local each published node carries its count of ready local endpoints
(pods counted once across address families) and the record carries
healthCheckNodePort. Zones are the nodes' `topology.kubernetes.io/zone`
labels; the region is settings.region, else the region label most published
nodes carry. Records are deterministic: nodes sorted by name, zones sorted.

Weight and canary hints are not derived from annotations: the record has no
field for them and the gateway takes weights and canaries from its routing
config, so a hint would be published and then ignored.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from controller.nodeports import PortViolation, check_health_check_port, check_ports
from controller.objects import (
    EXCLUDE_LB_LABEL,
    TO_BE_DELETED_TAINT,
    ClusterSettings,
    EndpointSliceInfo,
    NodeInfo,
    ServiceInfo,
    ServiceType,
)
from portway.model import (
    Node,
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


class Eligibility(enum.Enum):
    """Why a node does (or does not) receive a Service's traffic."""

    ELIGIBLE = "eligible"
    NOT_READY = "not ready"
    UNSCHEDULABLE = "unschedulable"
    EXCLUDED = "excluded"
    DELETING = "deleting"
    NO_ADDRESS = "no address"
    NO_LOCAL_ENDPOINT = "no ready local endpoint"

    @property
    def published(self) -> bool:
        """In the record (a NotReady node as unavailable, see the module docstring)."""
        return self in (Eligibility.ELIGIBLE, Eligibility.NOT_READY)

    @property
    def serving(self) -> bool:
        """Published with ready=True: kube-proxy forwards what arrives on its NodePorts."""
        return self is Eligibility.ELIGIBLE


@dataclass(frozen=True, slots=True)
class NodeVerdict:
    """One node's verdict for one Service; `address` is the one that would be published."""

    node: str
    eligibility: Eligibility
    reason: str
    address: str = ""
    zone: str = ""
    local_endpoints: int = 0


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


@dataclass(frozen=True, slots=True)
class _NodeBase:
    """The service-independent half of a node's verdict, computed once per derive."""

    info: NodeInfo
    blocked: NodeVerdict | None
    address: str
    no_local: NodeVerdict
    """The verdict for any Local Service without a usable endpoint here (shared)."""


@dataclass(frozen=True, slots=True)
class _Placement:
    """Where a Service's traffic may land: every node's verdict and the record's node list."""

    verdicts: tuple[NodeVerdict, ...]
    nodes: tuple[Node, ...]
    zones: tuple[str, ...]
    region: str
    summary: str


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
        self._nodes = tuple(_assess_node(settings, n) for n in sorted(nodes, key=lambda n: n.name))
        index: dict[tuple[str, str], list[EndpointSliceInfo]] = {}
        for s in slices:
            index.setdefault((s.namespace, s.service_name), []).append(s)
        self._slices = index
        self._cluster_placement: _Placement | None = None

    def derive_service(
        self, service: ServiceInfo, now: float, *, verdicts_always: bool = False
    ) -> ServiceDerivation:
        """Derive one Service. Node verdicts are computed for published Services, or for
        every Service of a publishable type when `verdicts_always` (what doctor wants)."""
        settings = self._settings
        slices = self._slices.get((service.namespace, service.name), ())
        total, ready, local = _count_endpoints(slices)
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

    def _placement(self, service: ServiceInfo, local: Mapping[str, int]) -> _Placement:
        """Verdicts and published nodes; under policy Cluster the same for every Service,
        so computed once per view (a cluster's worth of Services shares one tuple)."""
        if service.external_traffic_policy is TrafficPolicy.LOCAL:
            return self._place(self._verdicts(service, local))
        if self._cluster_placement is None:
            self._cluster_placement = self._place(self._verdicts(service, local))
        return self._cluster_placement

    def _place(self, verdicts: tuple[NodeVerdict, ...]) -> _Placement:
        published = [v for v in verdicts if v.eligibility.published]
        unready = sum(v.eligibility is Eligibility.NOT_READY for v in published)
        nodes = tuple(
            Node(
                v.node, v.address, v.zone, v.eligibility is Eligibility.ELIGIBLE, v.local_endpoints
            )
            for v in published
        )
        return _Placement(
            verdicts,
            nodes,
            tuple(sorted({v.zone for v in published if v.zone})),
            self._settings.region or _majority_region(self._nodes, published),
            f"{len(published)} node(s) published, {unready} of them NotReady"
            if unready
            else f"{len(published)} node(s) published",
        )

    def _verdicts(self, service: ServiceInfo, local: Mapping[str, int]) -> tuple[NodeVerdict, ...]:
        is_local = service.external_traffic_policy is TrafficPolicy.LOCAL
        out: list[NodeVerdict] = []
        for base in self._nodes:
            if base.blocked is not None:
                out.append(base.blocked)
                continue
            n = base.info
            count = local.get(n.name, 0)
            if is_local and count == 0:
                out.append(base.no_local)
                continue
            published_count = count if is_local else 0
            if not n.ready:
                out.append(
                    NodeVerdict(
                        n.name,
                        Eligibility.NOT_READY,
                        "Ready condition is not True: published as unavailable",
                        base.address,
                        n.zone,
                        published_count,
                    )
                )
                continue
            why = f"{count} ready local endpoint(s)" if is_local else "Ready and schedulable"
            out.append(
                NodeVerdict(
                    n.name, Eligibility.ELIGIBLE, why, base.address, n.zone, published_count
                )
            )
        return tuple(out)


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


def preferred_address(settings: ClusterSettings, node: NodeInfo) -> str:
    """The first address of the most preferred type present that parses as an IP, or ""."""
    for wanted in settings.address_preference:
        for a in node.addresses:
            if a.type is wanted and _is_ip(a.address):
                return a.address
    return ""


def _assess_node(settings: ClusterSettings, n: NodeInfo) -> _NodeBase:
    address = preferred_address(settings, n)
    blocked: NodeVerdict | None = None
    if n.unschedulable:
        blocked = NodeVerdict(
            n.name, Eligibility.UNSCHEDULABLE, "cordoned (spec.unschedulable)", address, n.zone
        )
    elif EXCLUDE_LB_LABEL in n.labels:
        blocked = NodeVerdict(
            n.name, Eligibility.EXCLUDED, f"labelled {EXCLUDE_LB_LABEL}", address, n.zone
        )
    elif any(t.key == TO_BE_DELETED_TAINT for t in n.taints):
        blocked = NodeVerdict(
            n.name,
            Eligibility.DELETING,
            f"tainted {TO_BE_DELETED_TAINT}: the cluster autoscaler is removing it",
            address,
            n.zone,
        )
    elif not address:
        wanted = ", ".join(t.value for t in settings.address_preference)
        blocked = NodeVerdict(
            n.name, Eligibility.NO_ADDRESS, f"no IP address of type {wanted}", "", n.zone
        )
    no_local = NodeVerdict(
        n.name,
        Eligibility.NO_LOCAL_ENDPOINT,
        "externalTrafficPolicy Local and no ready, non-terminating endpoint on this node",
        address,
        n.zone,
    )
    return _NodeBase(n, blocked, address, no_local)


def _count_endpoints(
    slices: Sequence[EndpointSliceInfo],
) -> tuple[int, int, dict[str, int]]:
    """(distinct endpoints, ready ones, ready non-terminating ones per node).

    FQDN slices are ignored as kube-proxy ignores them; an endpoint present in
    several slices (one per address family) counts once, ready if any copy is.
    """
    seen: dict[str, tuple[str | None, bool]] = {}
    for s in slices:
        if s.address_type == "FQDN":
            continue
        for e in s.endpoints:
            usable = e.ready and not e.terminating
            key = e.identity
            prev = seen.get(key)
            if prev is None or (usable and not prev[1]):
                seen[key] = (e.node_name, usable)
    local: dict[str, int] = {}
    ready = 0
    for node_name, usable in seen.values():
        if usable:
            ready += 1
            if node_name:
                local[node_name] = local.get(node_name, 0) + 1
    return len(seen), ready, local


def _majority_region(bases: Sequence[_NodeBase], published: Sequence[NodeVerdict]) -> str:
    names = {v.node for v in published}
    counts = Counter(b.info.region for b in bases if b.info.name in names and b.info.region)
    if not counts:
        return ""
    return min(counts, key=lambda r: (-counts[r], r))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
