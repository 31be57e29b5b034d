"""The registry record: JSON round trip and strict validation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.model import (
    Node,
    RecordError,
    ServiceKey,
    ServicePort,
    ServiceRecord,
    SessionAffinity,
    TrafficPolicy,
)
from portway.record_parser import parse_record, record_from_json


def record(**kw: object) -> ServiceRecord:
    base: dict[str, object] = dict(
        cluster="eu-1",
        namespace="shop",
        service="web",
        region="eu-west",
        zones=("eu-west-1a",),
        ports=(ServicePort("http", 80, 30080),),
        nodes=(Node("n1", "192.0.2.10", "eu-west-1a", True, 2),),
    )
    base.update(kw)
    return ServiceRecord(**base)  # type: ignore[arg-type]


def test_json_round_trip_preserves_every_field() -> None:
    r = record(
        external_traffic_policy=TrafficPolicy.LOCAL,
        health_check_node_port=32000,
        session_affinity=SessionAffinity.CLIENT_IP,
        published_at=1700000000.5,
    )
    assert record_from_json(r.to_json()) == r


def test_unknown_version_is_rejected_with_a_clear_message() -> None:
    raw = json.loads(record().to_json())
    raw["v"] = 2
    with pytest.raises(RecordError) as err:
        parse_record(raw)
    assert err.value.path == "v"
    assert "version 2" in str(err.value) and "version 1" in str(err.value)


def test_node_port_outside_range_is_rejected() -> None:
    with pytest.raises(RecordError, match=r"ports\[0\].nodePort: 8080 is outside .*30000-32767"):
        record(ports=(ServicePort("http", 80, 8080),))


def test_custom_node_port_range_is_honoured() -> None:
    r = record(ports=(ServicePort("http", 80, 20001),), node_port_range=(20000, 22767))
    assert r.ports[0].node_port == 20001


def test_bad_address_is_rejected() -> None:
    with pytest.raises(RecordError, match=r"nodes\[0\].address"):
        record(nodes=(Node("n1", "not-an-ip"),))


def test_ipv6_addresses_are_accepted() -> None:
    assert record(nodes=(Node("n1", "::1"),)).nodes[0].address == "::1"


def test_missing_required_field_names_it() -> None:
    raw = json.loads(record().to_json())
    del raw["cluster"]
    with pytest.raises(RecordError, match="cluster: is required"):
        parse_record(raw)


def test_key_layout_round_trips() -> None:
    key = record().key
    assert key.path() == "portway/v1/services/shop/web/eu-1"
    assert ServiceKey.parse(key.path()) == key
    with pytest.raises(RecordError):
        ServiceKey.parse("portway/v1/services/shop/web")


def test_port_lookup_by_name_and_number() -> None:
    r = record()
    assert r.port("http") == r.port(80) == r.port("80") == r.ports[0]
    assert r.port("grpc") is None


names = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)


@given(
    cluster=names,
    node_ports=st.lists(st.integers(30000, 32767), min_size=0, max_size=4, unique=True),
    ready=st.lists(st.booleans(), max_size=5),
)
def test_any_valid_record_survives_json(
    cluster: str, node_ports: list[int], ready: list[bool]
) -> None:
    r = record(
        cluster=cluster,
        ports=tuple(ServicePort(f"p{i}", 80 + i, np) for i, np in enumerate(node_ports)),
        nodes=tuple(Node(f"n{i}", f"10.0.0.{i + 1}", "", rd, i) for i, rd in enumerate(ready)),
    )
    assert record_from_json(r.to_json()) == r
