"""The fast record decoder accepts nothing the positioned parser refuses, and agrees on the rest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from portway import record_decoder
from portway.model import Node, RecordError, ServicePort, ServiceRecord
from portway.record_decoder import file_record, stored_record
from portway.registry.decode import parse_stored, parse_stored_text, stored_value
from portway.registry.record_files import parse_record_file, parse_record_text, record_file_bytes

JSON_FILE = Path("bench.web.east.json")


def record(service: str = "web", ready: bool = True) -> ServiceRecord:
    return ServiceRecord(
        cluster="east",
        namespace="shop",
        service=service,
        region="r1",
        zones=("a", "b"),
        ports=(ServicePort("http", 80, 30080),),
        nodes=(Node("n1", "10.0.0.1", "a", ready), Node("n2", "10.0.0.2", "b", True, 2)),
        published_at=12.5,
    )


def test_what_the_writers_store_takes_the_fast_path() -> None:
    stored = stored_value(record(), "me")
    assert stored_record(stored) == record()
    assert stored_record(stored.replace('"owner":"me"', '"owner":1')) is None
    fast = file_record(record_file_bytes(record(), 15.0, "me"))
    assert fast == (record(), 15.0, "me")
    assert file_record(record_file_bytes(record(), None, "")) == (record(), None, "")


def test_records_naming_the_same_nodes_share_one_node_tuple() -> None:
    web = stored_record(stored_value(record("web"), ""))
    api = stored_record(stored_value(record("api"), ""))
    assert web is not None and api is not None
    assert web.nodes is api.nodes
    other = stored_record(stored_value(record("img", ready=False), ""))
    assert other is not None and other.nodes[0].ready is False


def test_records_share_their_recurring_small_values() -> None:
    web = stored_record(stored_value(record("web"), ""))
    api = stored_record(stored_value(record("api"), ""))
    assert web is not None and api is not None
    assert web.zones is api.zones and web.zones == ("a", "b")
    assert web.node_port_range is api.node_port_range
    assert web.session_affinity_timeout_s is api.session_affinity_timeout_s


def test_node_lists_that_share_nothing_are_remembered_within_a_bound_of_text() -> None:
    """Local-policy records carry per-service endpoint counts: no two node lists are equal."""
    for i in range(3000):
        nodes = tuple(Node(f"n{n}", f"10.0.{n}.1", "a", True, i + n) for n in range(25))
        body = stored_value(dataclasses.replace(record(f"s{i}"), nodes=nodes), "")
        decoded = stored_record(body)
        assert decoded is not None and decoded.nodes == nodes
    held = sum(map(len, record_decoder._nodes))
    assert 0 < held <= record_decoder.MEMO_BYTES
    assert held == record_decoder._nodes.held


def test_a_typo_is_still_named_by_the_positioned_parser() -> None:
    body = json.loads(stored_value(record(), ""))
    body["nodes"][0]["raedy"] = body["nodes"][0].pop("ready")
    text = json.dumps(body)
    assert stored_record(text) is None
    try:
        parse_stored(text)
    except RecordError as exc:
        assert exc.path == "nodes[0].raedy" and "did you mean 'ready'" in str(exc)
    else:
        raise AssertionError("a typo passed")


# Mutations of a valid stored body: each may make it invalid in some way, or not.
VALUES: list[Any] = [None, True, False, 0, 1, -1, 1.0, 2, 1.5, "", "x", "80", [], {}, [1, 2]]
PATHS = [
    ("v",),
    ("cluster",),
    ("namespace",),
    ("region",),
    ("zones",),
    ("ports",),
    ("externalTrafficPolicy",),
    ("healthCheckNodePort",),
    ("sessionAffinity",),
    ("sessionAffinityTimeoutSeconds",),
    ("nodePortRange",),
    ("publishedAt",),
    ("owner",),
    ("ttlSeconds",),
    ("raedy",),
    ("nodes", 0, "ready"),
    ("nodes", 0, "address"),
    ("nodes", 0, "localEndpoints"),
    ("nodes", 1, "name"),
    ("nodes", 0, "zoen"),
    ("ports", 0, "port"),
    ("ports", 0, "nodePort"),
    ("ports", 0, "protocol"),
    ("ports", 0, "name"),
]
mutations = st.lists(
    st.tuples(st.sampled_from(PATHS), st.one_of(st.sampled_from(VALUES), st.just("<del>"))),
    max_size=3,
)


def mutated(body: dict[str, Any], changes: list[tuple[tuple[Any, ...], Any]]) -> bytes:
    for path, value in changes:
        target: Any = body
        try:
            for step in path[:-1]:
                target = target[step]
            if value == "<del>":
                target.pop(path[-1], None)
            else:
                target[path[-1]] = value
        except (KeyError, IndexError, TypeError, AttributeError):
            continue  # the path no longer exists in this body
    return json.dumps(body).encode()


def outcome(parse: Any, *args: Any) -> Any:
    try:
        return parse(*args)
    except RecordError:
        return "refused"


@settings(max_examples=400, deadline=None)
@given(changes=mutations)
def test_a_stored_value_reads_the_same_either_way(changes: list[Any]) -> None:
    data = mutated(json.loads(stored_value(record(), "me")), changes)
    fast = stored_record(data)
    slow = outcome(parse_stored_text, data)
    if fast is not None:
        assert slow == fast
    assert outcome(parse_stored, data) == slow


@settings(max_examples=400, deadline=None)
@given(changes=mutations)
def test_a_record_file_reads_the_same_either_way(changes: list[Any]) -> None:
    data = mutated(json.loads(record_file_bytes(record(), 15.0, "me")), changes)
    slow = outcome(parse_record_text, JSON_FILE, data, 0.0)
    fast = file_record(data)
    if fast is not None:
        assert slow != "refused"
        assert (slow.record, slow.ttl_s, slow.owner) == fast
    assert outcome(parse_record_file, JSON_FILE, data, 0.0) == slow
