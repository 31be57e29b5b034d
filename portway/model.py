"""The endpoint model: the versioned registry record both sides share.

Theory of operation: one `ServiceRecord` per (cluster, namespace, service) is
written by exactly one controller and read by every gateway. It says which
nodes of that cluster may receive traffic for the service and on which
NodePorts. The record is a value: frozen, validated on construction from
JSON (`ServiceRecord.from_json`), and serialised back with `to_json`. Anything a
gateway cannot trust (an unknown version, a nodePort outside the cluster's
range, an address that does not parse, a key the format does not have) is
refused with a `RecordError` that says which field is wrong and what is
allowed, so a watcher can log the key and skip the record instead of routing
to garbage.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import json
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from portway.record_format import (
    NODE_FIELDS,
    PORT_FIELDS,
    RecordField,
    unknown_key,
    unknown_keys_everywhere,
)

RECORD_VERSION = 1
KEY_PREFIX = "portway/v1/services/"
DEFAULT_NODE_PORT_RANGE = (30000, 32767)
DEFAULT_TTL_S = 15.0
DEFAULT_RENEW_S = 5.0

_E = TypeVar("_E", bound=enum.Enum)


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

    @classmethod
    def from_json(cls, data: str | bytes) -> ServiceRecord:
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RecordError("", f"not JSON: {exc}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: object, *, outer_keys: Collection[str] = ()) -> ServiceRecord:
        """Parse the JSON form; every problem is a RecordError naming the field.

        A key the format does not have is refused (a typo such as `raedy`
        would otherwise leave the default in force silently); `outer_keys` are
        keys the caller has already taken out (a record file's `ttlSeconds`),
        offered in the did-you-mean.
        """
        if not isinstance(raw, dict):
            raise RecordError("", f"a record is a JSON object, got {type(raw).__name__}")
        unknown = unknown_keys_everywhere(raw, outer_keys)
        if unknown:
            path, _, message = unknown[0].partition(": ")
            raise RecordError(path, "; ".join([message, *unknown[1:]]))
        version = raw.get("v")
        if version != RECORD_VERSION:
            raise RecordError(
                "v",
                f"unsupported record version {version!r}; this portway reads version "
                f"{RECORD_VERSION} (upgrade the gateway, or the writer is not portway)",
            )
        rng = raw.get("nodePortRange", list(DEFAULT_NODE_PORT_RANGE))
        if not (isinstance(rng, list) and len(rng) == 2 and all(_is_int(x) for x in rng)):
            raise RecordError("nodePortRange", "must be [first, last] integers")
        hc = raw.get("healthCheckNodePort")
        if hc is not None and not _is_int(hc):
            raise RecordError("healthCheckNodePort", "must be an integer or null")
        return cls(
            cluster=sys.intern(_str(raw, "cluster", required=True)),
            namespace=_str(raw, "namespace", required=True),
            service=_str(raw, "service", required=True),
            region=sys.intern(_str(raw, "region")),
            zones=tuple(_str_list(raw, "zones")),
            ports=tuple(_port(p, f"ports[{i}]") for i, p in enumerate(_list(raw, "ports"))),
            nodes=tuple(_node(n, f"nodes[{i}]") for i, n in enumerate(_list(raw, "nodes"))),
            external_traffic_policy=_enum(
                TrafficPolicy, raw.get("externalTrafficPolicy", "Cluster"), "externalTrafficPolicy"
            ),
            health_check_node_port=hc,
            session_affinity=_enum(
                SessionAffinity, raw.get("sessionAffinity", "None"), "sessionAffinity"
            ),
            session_affinity_timeout_s=_int(raw, "sessionAffinityTimeoutSeconds", 10800),
            node_port_range=(int(rng[0]), int(rng[1])),
            published_at=_float(raw, "publishedAt"),
        )


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


def _refuse_unknown(
    raw: Mapping[str, Any], fields: Sequence[RecordField], path: str, outer: Collection[str] = ()
) -> None:
    problem = unknown_key(raw, fields, outer)
    if problem is not None:
        key, message = problem
        raise RecordError(f"{path}.{key}" if path else key, message)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str(raw: Mapping[str, Any], key: str, *, required: bool = False, path: str = "") -> str:
    where = f"{path}.{key}" if path else key
    if key not in raw:
        if required:
            raise RecordError(where, "is required")
        return ""
    v = raw[key]
    if not isinstance(v, str):
        raise RecordError(where, f"must be a string, got {type(v).__name__}")
    return v


def _int(raw: Mapping[str, Any], key: str, default: int, path: str = "") -> int:
    v = raw.get(key, default)
    if not _is_int(v):
        raise RecordError(f"{path}.{key}" if path else key, "must be an integer")
    return int(v)


def _float(raw: Mapping[str, Any], key: str) -> float:
    v = raw.get(key, 0.0)
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise RecordError(key, "must be a number")
    return float(v)


def _list(raw: Mapping[str, Any], key: str) -> list[Any]:
    v = raw.get(key, [])
    if not isinstance(v, list):
        raise RecordError(key, f"must be a list, got {type(v).__name__}")
    return v


def _str_list(raw: Mapping[str, Any], key: str) -> list[str]:
    items = _list(raw, key)
    for i, v in enumerate(items):
        if not isinstance(v, str):
            raise RecordError(f"{key}[{i}]", "must be a string")
    return items


def _enum(cls: type[_E], value: object, path: str) -> _E:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in cls)
        raise RecordError(path, f"{value!r} is not one of {allowed}") from None


def _port(raw: object, path: str) -> ServicePort:
    if not isinstance(raw, dict):
        raise RecordError(path, "must be an object")
    _refuse_unknown(raw, PORT_FIELDS, path)
    for k in ("port", "nodePort"):
        if not _is_int(raw.get(k)):
            raise RecordError(f"{path}.{k}", "is required and must be an integer")
    return ServicePort(
        name=_str(raw, "name", path=path),
        port=int(raw["port"]),
        node_port=int(raw["nodePort"]),
        protocol=_enum(Protocol, raw.get("protocol", "TCP"), f"{path}.protocol"),
    )


_NODES: dict[tuple[tuple[tuple[str, Any], ...], tuple[type, ...]], Node] = {}
_NODES_LIMIT = 1 << 16


def _node(raw: object, path: str) -> Node:
    """A node as decoded before when its fields are exactly the same, else a new one.

    A node carries the NodePorts of every service of its cluster, so the same
    node object recurs in thousands of records: decoded and checked once, and
    held once (a `Node` is frozen). The memo key keeps each value's type, so
    `ready: 1` never passes for `ready: true`.
    """
    if not isinstance(raw, dict):
        raise RecordError(path, "must be an object")
    try:
        memo_key = (tuple(raw.items()), tuple(map(type, raw.values())))
        known = _NODES.get(memo_key)
    except TypeError:  # an unhashable value: not a valid node anyway
        memo_key, known = None, None
    if known is not None:
        return known
    node = _decode_node(raw, path)
    if memo_key is not None:
        if len(_NODES) >= _NODES_LIMIT:
            _NODES.clear()
        _NODES[memo_key] = node
    return node


def _decode_node(raw: dict[str, Any], path: str) -> Node:
    _refuse_unknown(raw, NODE_FIELDS, path)
    ready = raw.get("ready", True)
    if not isinstance(ready, bool):
        raise RecordError(f"{path}.ready", "must be true or false")
    return Node(
        name=sys.intern(_str(raw, "name", required=True, path=path)),
        address=sys.intern(_str(raw, "address", required=True, path=path)),
        zone=sys.intern(_str(raw, "zone", path=path)),
        ready=ready,
        local_endpoints=_int(raw, "localEndpoints", 0, path),
    )
