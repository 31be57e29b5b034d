"""The fast way from a stored record's JSON to a `ServiceRecord`, for the common case.

Theory of operation. A gateway reads every record of the fleet at startup
(20,000 at 10,000 services over two clusters), and `record_parser.parse_record`
after `json.loads` costs ~70 µs a record, most of it walking 25 node dicts in
Python. Here msgspec decodes the record's JSON straight into typed structs in
C, refusing unknown keys and wrong types as `parse_record` does, and leaves the
`nodes` and `ports` lists as raw JSON text: the records of one cluster name
the same nodes, so each distinct text is decoded once and its tuple of
frozen `Node`s (or `ServicePort`s) shared by every record naming it (held
once in memory too); names recurring across records (namespace, service,
zones) are interned. About 9 µs a record.

This path only ever accepts; it never explains. Anything it does not take
(a decode error, an unknown key, a wrong version or TTL, a record that
fails `validate`) returns None and the caller parses the same bytes with the
positioned slow path, which raises the `RecordError` naming the field. So
the fast path must accept nothing the slow path refuses and give equal
records for what both accept: a hypothesis test holds the two side by side.
"""

from __future__ import annotations

import sys
from typing import Any, Final, TypeVar

import msgspec

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

MEMO_BYTES: Final = 2 << 20
"""Text of the distinct node (and port) lists remembered, in bytes; a memo is cleared whole
when full. Bounded by bytes, not entries: a node list is ~100 bytes a node, and records
that share nothing (externalTrafficPolicy Local: each service's nodes carry its own
endpoint counts; nodes flipping Ready all day) would otherwise keep thousands of texts of
kilobytes each that no record needs any more."""


class _NodeDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    name: str
    address: str
    zone: str = ""
    ready: bool = True
    local_endpoints: int = 0


class _PortDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    port: int
    node_port: int
    name: str = ""
    protocol: Protocol = Protocol.TCP


class _RecordDoc(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    cluster: str
    namespace: str
    service: str
    v: int
    region: str = ""
    zones: list[str] = []
    ports: msgspec.Raw = msgspec.Raw(b"[]")
    nodes: msgspec.Raw = msgspec.Raw(b"[]")
    external_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    health_check_node_port: int | None = None
    session_affinity: SessionAffinity = SessionAffinity.NONE
    session_affinity_timeout_seconds: int = 10800
    node_port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE
    published_at: float = 0.0
    owner: str = ""
    """The publisher identity holding the key (the backends' own field, not the record's)."""


class _FileDoc(_RecordDoc, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """A record file: the version may be left out, and a TTL may be given."""

    v: int = RECORD_VERSION
    ttl_seconds: float | None = None


_STORED = msgspec.json.Decoder(_RecordDoc)
_FILE = msgspec.json.Decoder(_FileDoc)
_NODES_OF = msgspec.json.Decoder(tuple[_NodeDoc, ...])
_PORTS_OF = msgspec.json.Decoder(tuple[_PortDoc, ...])
_SMALL_LIMIT: Final = 1 << 12
_nodes: BoundedMemo[bytes, tuple[Node, ...]] = BoundedMemo(MEMO_BYTES)
_ports: BoundedMemo[bytes, tuple[ServicePort, ...]] = BoundedMemo(MEMO_BYTES)
"""Node (and port) lists by their JSON text, each costing its length (`MEMO_BYTES`)."""
_small: BoundedMemo[tuple[str, object], Any] = BoundedMemo(_SMALL_LIMIT)
"""Recurring small values of records (zone lists, NodePort ranges, affinity timeouts) by
(field, value): one object each instead of one per record (~200 bytes a record)."""
_T = TypeVar("_T")
_FAILED = (msgspec.ValidationError, msgspec.DecodeError, RecordError)


def stored_record(value: str | bytes) -> ServiceRecord | None:
    """The record of a registry value (its `owner` checked and left out: writers read it
    with `decode.stored_owner`), or None: parse it with `decode.parse_stored`."""
    try:
        return _record(_STORED.decode(value))
    except _FAILED:
        return None


def file_record(data: bytes) -> tuple[ServiceRecord, float | None, str] | None:
    """(record, TTL, owner) of a JSON record file, or None: parse it with the slow path."""
    try:
        doc = _FILE.decode(data)
        ttl = doc.ttl_seconds
        if ttl is not None and not ttl > 0:
            return None
        return _record(doc), ttl, doc.owner
    except _FAILED:
        return None


def _record(doc: _RecordDoc) -> ServiceRecord:
    if doc.v != RECORD_VERSION:
        raise RecordError("v", "unsupported")
    return ServiceRecord(
        cluster=sys.intern(doc.cluster),
        namespace=sys.intern(doc.namespace),
        service=sys.intern(doc.service),
        region=sys.intern(doc.region),
        zones=_shared("zones", tuple(map(sys.intern, doc.zones))),
        ports=_port_tuple(bytes(doc.ports)),
        nodes=_node_tuple(bytes(doc.nodes)),
        external_traffic_policy=doc.external_traffic_policy,
        health_check_node_port=doc.health_check_node_port,
        session_affinity=doc.session_affinity,
        session_affinity_timeout_s=_shared("timeout", doc.session_affinity_timeout_seconds),
        node_port_range=_shared("range", doc.node_port_range),
        published_at=doc.published_at,
    )


def _shared(field: str, value: _T) -> _T:
    """The first object equal to `value` seen for `field` (keyed by field, so values of
    different fields never stand in for each other)."""
    key = (field, value)
    found: _T | None = _small.get(key)
    if found is None:
        found = _small.put(key, value)
    return found


def _node_tuple(text: bytes) -> tuple[Node, ...]:
    nodes = _nodes.get(text)
    if nodes is None:
        nodes = tuple(
            Node(
                name=sys.intern(n.name),
                address=sys.intern(n.address),
                zone=sys.intern(n.zone),
                ready=n.ready,
                local_endpoints=n.local_endpoints,
            )
            for n in _NODES_OF.decode(text)
        )
        _nodes.put(text, nodes, len(text))
    return nodes


def _port_tuple(text: bytes) -> tuple[ServicePort, ...]:
    ports = _ports.get(text)
    if ports is None:
        ports = tuple(
            ServicePort(name=p.name, port=p.port, node_port=p.node_port, protocol=p.protocol)
            for p in _PORTS_OF.decode(text)
        )
        _ports.put(text, ports, len(text))
    return ports
