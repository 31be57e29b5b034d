"""The explaining parse of a registry record's JSON form: every problem is a `RecordError`.

Theory of operation: `parse_record` (and `record_from_json`, from text)
walks the decoded JSON in Python and, at the first thing a gateway cannot
trust, raises a `RecordError` whose `path` names the field
(`nodes[3].ready`, `ports[0].nodePort`) and whose message says what is
allowed: keys the format does not have (`record_format`, with a
did-you-mean), a wrong type, an unknown version or enum value. What it
accepts becomes a `ServiceRecord`, whose construction checks the invariants
across fields (`model.validate`). `record_decoder` is the fast path for the
common case and falls back here to explain what it refused.

A node recurs, with the same fields, in every record of its cluster that it
serves, so `_node` decodes each distinct node once and shares the frozen
`Node` (a bounded memo whose key keeps every value's type).
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeVar

from portway.bounded_memo import BoundedMemo
from portway.model import (
    DEFAULT_NODE_PORT_RANGE,
    RECORD_VERSION,
    Node,
    Protocol,
    RecordError,
    ServicePort,
    ServiceRecord,
    SessionAffinity,
    TrafficPolicy,
)
from portway.record_format import (
    NODE_FIELDS,
    PORT_FIELDS,
    RecordField,
    unknown_key,
    unknown_keys_everywhere,
)

_E = TypeVar("_E", bound=enum.Enum)


def record_from_json(data: str | bytes) -> ServiceRecord:
    """Parse a record's JSON text (`parse_record`); text that is not JSON is a RecordError."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError("", f"not JSON: {exc}") from None
    return parse_record(raw)


def parse_record(raw: object, *, outer_keys: Collection[str] = ()) -> ServiceRecord:
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
    return ServiceRecord(
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


_NODES_LIMIT = 1 << 16
_NODES: BoundedMemo[tuple[tuple[tuple[str, Any], ...], tuple[type, ...]], Node] = BoundedMemo(
    _NODES_LIMIT
)


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
        _NODES.put(memo_key, node)
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
