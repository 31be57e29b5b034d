"""A node recurring in many records is decoded once and shared; the memo never loosens a check."""

from __future__ import annotations

import pytest

from portway.model import RecordError
from portway.record_parser import parse_record


def _raw(service: str, ready: object = True) -> dict[str, object]:
    return {
        "v": 1,
        "cluster": "east",
        "namespace": "shop",
        "service": service,
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
        "nodes": [{"name": "n1", "address": "10.0.0.1", "zone": "a", "ready": ready}],
    }


def test_the_same_node_in_two_records_is_one_object() -> None:
    web = parse_record(_raw("web"))
    api = parse_record(_raw("api"))
    assert web.nodes[0] is api.nodes[0]
    assert parse_record(_raw("img", ready=False)).nodes[0].ready is False


def test_a_memoised_node_does_not_let_a_look_alike_value_through() -> None:
    parse_record(_raw("web", ready=True))
    with pytest.raises(RecordError, match="ready"):
        parse_record(_raw("api", ready=1))
