"""The Kubernetes objects the controller reads, cut down to what derivation needs.

Theory of operation: the watch cache (controller/watch.py) and `portway doctor`
hold whatever the `kubernetes` client returns; `controller/kube_objects.py`
converts each object once, at that edge, into the frozen values below. Only the
fields kube-proxy and the service controller consult when they decide which
node serves a NodePort are kept, so `controller/derive.py` is a pure function
of plain values and a test writes a cluster in a few lines.

`ClusterSettings` is the operator's side of the same decision: the cluster's
name and region, the node address preference, the apiserver's NodePort range
(`--service-node-port-range`) and the per-tier ranges portway enforces on top
of it. It refuses an inconsistent combination on construction.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from portway.model import DEFAULT_NODE_PORT_RANGE, Protocol, SessionAffinity, TrafficPolicy

EXPORT_ANNOTATION = "portway.io/export"
TIER_KEY = "portway.io/tier"
EXCLUDE_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# The cluster autoscaler taints a node it is about to delete; the cloud service
# controller drops such nodes from load balancers (KEP-3458), and so do we.
TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"
DEFAULT_AFFINITY_TIMEOUT_S = 10800

_EMPTY: Mapping[str, str] = MappingProxyType({})


def frozen_map(items: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """A read-only copy, so a value holding labels or annotations stays immutable."""
    return MappingProxyType(dict(items)) if items else _EMPTY


class ServiceType(enum.Enum):
    """Kubernetes Service spec.type."""

    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"
    EXTERNAL_NAME = "ExternalName"


class AddressType(enum.Enum):
    """Node status.addresses[].type."""

    EXTERNAL_IP = "ExternalIP"
    INTERNAL_IP = "InternalIP"
    HOSTNAME = "Hostname"
    EXTERNAL_DNS = "ExternalDNS"
    INTERNAL_DNS = "InternalDNS"


@dataclass(frozen=True, slots=True)
class PortInfo:
    """One entry of Service spec.ports; `node_port` is None when none is allocated."""

    name: str
    port: int
    node_port: int | None
    protocol: Protocol = Protocol.TCP


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """A Service, plus whether a multicluster ServiceExport of the same name exists."""

    namespace: str
    name: str
    type: ServiceType = ServiceType.CLUSTER_IP
    ports: tuple[PortInfo, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=frozen_map, hash=False)
    labels: Mapping[str, str] = field(default_factory=frozen_map, hash=False)
    external_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    health_check_node_port: int | None = None
    session_affinity: SessionAffinity = SessionAffinity.NONE
    session_affinity_timeout_s: int = DEFAULT_AFFINITY_TIMEOUT_S
    service_export: bool = False

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class NodeAddress:
    type: AddressType
    address: str


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    effect: str = "NoSchedule"
    value: str = ""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A Node: its addresses in status order, labels, Ready condition and spec.unschedulable."""

    name: str
    addresses: tuple[NodeAddress, ...] = ()
    labels: Mapping[str, str] = field(default_factory=frozen_map, hash=False)
    ready: bool = True
    unschedulable: bool = False
    taints: tuple[Taint, ...] = ()

    @property
    def zone(self) -> str:
        return self.labels.get(ZONE_LABEL, "")

    @property
    def region(self) -> str:
        return self.labels.get(REGION_LABEL, "")


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """One endpoint of an EndpointSlice.

    Conditions follow the API's defaults: a missing `ready` or `serving` means
    true, a missing `terminating` false (kube-proxy reads them the same way).
    `target` is the targetRef (usually the pod name): the same pod appears once
    per address family in a dual-stack cluster, and must count once.
    """

    addresses: tuple[str, ...]
    node_name: str | None = None
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    target: str = ""

    @property
    def identity(self) -> str:
        return self.target or (self.addresses[0] if self.addresses else "")


@dataclass(frozen=True, slots=True)
class EndpointSliceInfo:
    """An EndpointSlice, tied to its Service by the kubernetes.io/service-name label."""

    namespace: str
    name: str
    service_name: str
    address_type: str = "IPv4"
    endpoints: tuple[EndpointInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class PortRange:
    """An inclusive port range, written like the apiserver flag: `30000-32767`."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not (1 <= self.first <= self.last <= 65535):
            raise ValueError(f"{self.first}-{self.last} is not a valid port range")

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    def covers(self, other: PortRange) -> bool:
        return self.first <= other.first and other.last <= self.last

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """`30000-32767`, or `30000+2768` (first+size) like the apiserver accepts."""
        text = text.strip()
        try:
            if "+" in text:
                first, size = (int(x) for x in text.split("+", 1))
                return cls(first, first + size - 1)
            first, last = (int(x) for x in text.split("-", 1))
        except ValueError:
            raise ValueError(f"{text!r} is not a port range (FIRST-LAST or FIRST+SIZE)") from None
        return cls(first, last)


DEFAULT_RANGE = PortRange(*DEFAULT_NODE_PORT_RANGE)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSettings:
    """What the operator tells one cluster's controller (flags of `portway controller`)."""

    cluster: str
    """Cluster name: the last segment of every registry key this controller writes."""
    region: str = ""
    """Region of the records; empty means: taken from the nodes' topology region label."""
    address_preference: tuple[AddressType, ...] = (
        AddressType.EXTERNAL_IP,
        AddressType.INTERNAL_IP,
    )
    """Node address types in order of preference; the first present one is published."""
    node_port_range: PortRange = DEFAULT_RANGE
    """The apiserver's --service-node-port-range."""
    tier_ranges: Mapping[str, PortRange] = field(default_factory=dict, hash=False)
    """Per-tier nodePort ranges: a Service labelled or annotated portway.io/tier=T must use
    nodePorts inside tier_ranges[T]; an unknown tier is a violation too."""
    export_annotation: str = EXPORT_ANNOTATION
    """Annotation whose value "true" exports a Service (a ServiceExport does too)."""

    def __post_init__(self) -> None:
        if not self.cluster or "/" in self.cluster:
            raise ValueError(f"cluster name must be non-empty without '/', got {self.cluster!r}")
        if not self.address_preference:
            raise ValueError("address preference needs at least one address type")
        for tier, rng in self.tier_ranges.items():
            if not self.node_port_range.covers(rng):
                raise ValueError(
                    f"tier {tier!r} range {rng} lies outside the NodePort range "
                    f"{self.node_port_range}"
                )
        object.__setattr__(self, "tier_ranges", MappingProxyType(dict(self.tier_ranges)))
