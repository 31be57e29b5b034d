"""The endpoint model: the versioned registry record both sides share.

Theory of operation: one `ServiceRecord` per (cluster, namespace, service) is
written by exactly one controller and read by every gateway. It says which
nodes of that cluster may receive traffic for the service and on which
NodePorts. The record is a value: frozen, checked on construction
(`validate`), parsed from JSON by `portway.record_parser` (`parse_record`,
`record_from_json`: the explaining parser; the fast one is
`portway.record_decoder`), and serialised back with `to_json`. Anything a gateway cannot trust (an
unknown version, a nodePort outside the cluster's range, an address that
does not parse, a key the format does not have) is refused with a
`RecordError` that says which field is wrong and what is allowed, so a
watcher can log the key and skip the record instead of routing to garbage.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

RECORD_VERSION = 1
KEY_PREFIX = "portway/v1/services/"
DEFAULT_NODE_PORT_RANGE = (30000, 32767)
DEFAULT_TTL_S = 15.0
DEFAULT_RENEW_S = 5.0


class RecordError(ValueError):
    """A registry record that cannot be used; `path` names the offending field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class TrafficPolicy(enum.Enum):
    """Kubernetes externalTrafficPolicy."""

    CLUSTER = "Cluster"
    LOCAL = "Local"


class SessionAffinity(enum.Enum):
    """Kubernetes sessionAffinity."""

    NONE = "None"
    CLIENT_IP = "ClientIP"


class Protocol(enum.Enum):
    """Service port protocol."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


@dataclass(frozen=True, slots=True)
class ServiceKey:
    """Identity of a record: one per (namespace, service, cluster)."""

    namespace: str
    service: str
    cluster: str

    def path(self) -> str:
        """The registry key: `portway/v1/services/<namespace>/<service>/<cluster>`."""
        return f"{KEY_PREFIX}{self.namespace}/{self.service}/{self.cluster}"

    @classmethod
    def parse(cls, key: str) -> ServiceKey:
        """Inverse of `path`; raises RecordError for keys outside the layout."""
        if not key.startswith(KEY_PREFIX):
            raise RecordError("key", f"{key!r} does not start with {KEY_PREFIX!r}")
        parts = key[len(KEY_PREFIX) :].split("/")
        if len(parts) != 3 or not all(parts):
            raise RecordError("key", f"{key!r} is not {KEY_PREFIX}<namespace>/<service>/<cluster>")
        return cls(parts[0], parts[1], parts[2])


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of the Service with the NodePort every eligible node opens for it."""

    name: str
    port: int
    node_port: int
    protocol: Protocol = Protocol.TCP


@dataclass(frozen=True, slots=True)
class Node:
    """A node that may receive traffic for the service.

    `local_endpoints` counts the ready endpoints of the service on this node;
    it matters under externalTrafficPolicy Local, where kube-proxy drops
    traffic arriving at a node without one.
    """

    name: str
    address: str
    zone: str = ""
    ready: bool = True
    local_endpoints: int = 0


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """What one cluster publishes about one exported Service."""

    cluster: str
    namespace: str
    service: str
    region: str = ""
    zones: tuple[str, ...] = ()
    ports: tuple[ServicePort, ...] = ()
    nodes: tuple[Node, ...] = ()
    external_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    health_check_node_port: int | None = None
    session_affinity: SessionAffinity = SessionAffinity.NONE
    session_affinity_timeout_s: int = 10800
    node_port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE
    published_at: float = 0.0
    version: int = RECORD_VERSION

    def __post_init__(self) -> None:
        validate(self)

    @property
    def key(self) -> ServiceKey:
        return ServiceKey(self.namespace, self.service, self.cluster)

    def port(self, name_or_number: str | int) -> ServicePort | None:
        """The service port by name, or by service port number."""
        for p in self.ports:
            if p.name == name_or_number or p.port == name_or_number:
                return p
        if isinstance(name_or_number, str) and name_or_number.isdigit():
            return self.port(int(name_or_number))
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to the registry (camelCase, versioned)."""
        out: dict[str, Any] = {
            "v": self.version,
            "cluster": self.cluster,
            "namespace": self.namespace,
            "service": self.service,
            "region": self.region,
            "zones": list(self.zones),
            "ports": [
                {
                    "name": p.name,
                    "protocol": p.protocol.value,
                    "port": p.port,
                    "nodePort": p.node_port,
                }
                for p in self.ports
            ],
            "externalTrafficPolicy": self.external_traffic_policy.value,
            "healthCheckNodePort": self.health_check_node_port,
            "sessionAffinity": self.session_affinity.value,
            "sessionAffinityTimeoutSeconds": self.session_affinity_timeout_s,
            "nodePortRange": list(self.node_port_range),
            "nodes": [
                {
                    "name": n.name,
                    "address": n.address,
                    "zone": n.zone,
                    "ready": n.ready,
                    "localEndpoints": n.local_endpoints,
                }
                for n in self.nodes
            ],
            "publishedAt": self.published_at,
        }
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def validate(record: ServiceRecord) -> None:
    """Check the invariants a gateway relies on; raise RecordError on the first broken one."""
    if record.version != RECORD_VERSION:
        raise RecordError("v", f"unsupported record version {record.version}")
    for name, value in (
        ("cluster", record.cluster),
        ("namespace", record.namespace),
        ("service", record.service),
    ):
        if not value or "/" in value:
            raise RecordError(name, f"must be a non-empty name without '/', got {value!r}")
    lo, hi = record.node_port_range
    if not (1 <= lo <= hi <= 65535):
        raise RecordError("nodePortRange", f"[{lo}, {hi}] is not a valid port range")
    seen: set[str] = set()
    for i, p in enumerate(record.ports):
        if not (lo <= p.node_port <= hi):
            raise RecordError(
                f"ports[{i}].nodePort",
                f"{p.node_port} is outside the cluster's NodePort range {lo}-{hi}",
            )
        if not (1 <= p.port <= 65535):
            raise RecordError(f"ports[{i}].port", f"{p.port} is not a port number (1-65535)")
        if p.name in seen:
            raise RecordError(f"ports[{i}].name", f"duplicate port name {p.name!r}")
        seen.add(p.name)
    if record.health_check_node_port is not None and not (
        1 <= record.health_check_node_port <= 65535
    ):
        raise RecordError(
            "healthCheckNodePort", f"{record.health_check_node_port} is not a port number"
        )
    names: set[str] = set()
    for i, n in enumerate(record.nodes):
        if not _is_ip_address(n.address):
            raise RecordError(
                f"nodes[{i}].address", f"{n.address!r} is not an IPv4 or IPv6 address"
            )
        if n.local_endpoints < 0:
            raise RecordError(f"nodes[{i}].localEndpoints", "must be >= 0")
        if n.name in names:
            raise RecordError(f"nodes[{i}].name", f"duplicate node name {n.name!r}")
        names.add(n.name)


@functools.lru_cache(maxsize=1 << 16)
def _is_ip_address(text: str) -> bool:
    """Whether `text` is an IP address; cached, as a node's address recurs in every
    service record of its cluster (parsing it was half the cost of reading a record)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
