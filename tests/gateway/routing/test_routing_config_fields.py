"""Config fields of balancing, locality and matching change routing (config coverage entries)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from routing_builders import WEB, facts, record, table

from gateway.routing.endpoints import EndpointState

EAST = record("east", "us-east-1", [(f"e{i}", f"10.0.0.{i + 1}", "us-east-1a") for i in range(2)])
WEST = record("west", "us-west-2", [(f"w{i}", f"10.1.0.{i + 1}", "us-west-2a") for i in range(2)])


def _doc(backend: dict[str, Any], rule: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "gateway": {"region": "us-east-1", "zone": "us-east-1a"},
        "listeners": [WEB],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "b"}], **(rule or {})}]}],
        "backends": [{"name": "b", **backend}],
    }


def _static(n: int, lb: dict[str, Any]) -> dict[str, Any]:
    return {
        "endpoints": [{"address": "127.0.0.1", "port": 9000 + i} for i in range(n)],
        "loadBalancer": lb,
    }


SERVICE = {"service": {"namespace": "shop", "name": "web", "port": "http"}}


def test_explicit_priorities_override_the_gateway_s_own_zone() -> None:
    backend = {
        **SERVICE,
        "locality": {"priorities": [{"clusters": ["west"]}, {"regions": ["us-east-1"]}]},
    }
    t = table(_doc(backend), [EAST, WEST])
    assert [{e.cluster for e in level} for level in t.backends["b"].levels] == [{"west"}, {"east"}]
    state = EndpointState()
    assert {t.route_http(facts(), state).endpoint.cluster for _ in range(50)} == {"west"}  # type: ignore[union-attr]


def test_priority_zones_pick_the_level_of_each_endpoint() -> None:
    backend = {**SERVICE, "locality": {"priorities": [{"zones": ["us-west-2a"]}, {}]}}
    t = table(_doc(backend), [EAST, WEST])
    assert [{e.zone for e in level} for level in t.backends["b"].levels] == [
        {"us-west-2a"},
        {"us-east-1a"},
    ]


def test_choice_count_is_the_number_of_endpoints_least_request_compares() -> None:
    def idle_share(choices: int) -> float:
        t = table(_doc(_static(2, {"policy": "least_request", "choiceCount": choices})))
        (busy, idle) = t.backends["b"].endpoints
        state = EndpointState(in_flight={busy.key: 50})
        picks = Counter(t.route_http(facts(), state).endpoint.key for _ in range(2000))  # type: ignore[union-attr]
        return picks[idle.key] / 2000

    assert idle_share(8) > 0.98  # missing the idle one in 8 draws: 1 in 256
    assert idle_share(2) < 0.85  # in 2 draws: 1 in 4


def test_ring_size_sets_the_points_on_the_ring() -> None:
    small = table(_doc(_static(4, {"policy": "ring_hash", "ringSize": 64}))).backends["b"]
    large = table(_doc(_static(4, {"policy": "ring_hash", "ringSize": 8192}))).backends["b"]
    assert len(small._hash_table(0)) == 4 * 16  # at least 16 points per endpoint
    assert len(large._hash_table(0)) == 4 * 8192 // 8


def test_maglev_table_size_sets_the_lookup_table() -> None:
    backend = table(_doc(_static(3, {"policy": "maglev", "maglevTableSize": 1000}))).backends["b"]
    assert backend._hash_table(0).size == 1009  # the next prime


def test_a_method_match_routes_only_that_method() -> None:
    t = table(_doc(_static(1, {}), {"matches": [{"method": "POST"}]}))
    state = EndpointState()
    assert t.route_http(facts(method="POST"), state).endpoint is not None
    assert t.route_http(facts(method="GET"), state).error == "no_route"


def test_static_endpoint_weight_sets_its_share() -> None:
    backend = {
        "endpoints": [
            {"address": "127.0.0.1", "port": 9000, "weight": 3},
            {"address": "127.0.0.1", "port": 9001, "weight": 1},
        ]
    }
    t = table(_doc(backend))
    state = EndpointState()
    picks = Counter(t.route_http(facts(), state).endpoint.port for _ in range(400))  # type: ignore[union-attr]
    assert picks == {9000: 300, 9001: 100}


def test_static_endpoint_region_and_zone_place_it_in_the_locality_levels() -> None:
    backend = {
        "endpoints": [
            {"address": "127.0.0.1", "port": 9003, "region": "us-west-2", "zone": "us-west-2a"},
            {"address": "127.0.0.1", "port": 9002, "region": "us-east-1", "zone": "us-east-1b"},
            {"address": "127.0.0.1", "port": 9001, "region": "us-east-1", "zone": "us-east-1a"},
        ]
    }
    levels = table(_doc(backend)).backends["b"].levels
    assert [[e.port for e in level] for level in levels] == [[9001], [9002], [9003]]


def test_static_endpoint_cluster_names_its_key_and_its_priority() -> None:
    backend = {
        "endpoints": [
            {"address": "127.0.0.1", "port": 9000, "cluster": "fra-dc1"},
            {"address": "127.0.0.1", "port": 9001, "cluster": "ams-dc1"},
        ],
        "locality": {"priorities": [{"clusters": ["ams-dc1"]}]},
    }
    b = table(_doc(backend)).backends["b"]
    assert sorted(e.key for e in b.endpoints) == [
        "ams-dc1/127.0.0.1:9001",
        "fra-dc1/127.0.0.1:9000",
    ]
    assert [[e.cluster for e in level] for level in b.levels] == [["ams-dc1"], ["fra-dc1"]]


def test_canary_percent_is_the_share_it_takes() -> None:
    for percent in (3, 35, 80):
        doc = _doc(_static(1, {}), {"canary": {"backend": "c", "percent": percent}})
        doc["backends"].append({"name": "c", **_static(1, {})})
        t = table(doc)
        state = EndpointState()
        seen = Counter(t.route_http(facts(), state).backend.name for _ in range(20000))  # type: ignore[union-attr]
        assert abs(seen["c"] / 20000 - percent / 100) < 0.015, (percent, seen)
