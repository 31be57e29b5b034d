"""Compile-time region filtering, locality levels, spill and panic."""

from __future__ import annotations

from collections import Counter

import pytest
from routing_builders import EAST, WEST, facts, record, service_doc, table

from gateway.routing.endpoints import EndpointState
from gateway.routing.explain import explain_http
from gateway.routing.locality import priority_load

EAST_B = record(
    "east-b", "us-east-1", [(f"b{i}", f"10.0.1.{i + 1}", "us-east-1b") for i in range(4)]
)


def test_not_ready_node_is_never_picked_and_shrinks_its_levels_health() -> None:
    """1 of 2 local nodes NotReady: level 0 keeps 50% × 1.4 = 70%, 30% spills to the next zone."""
    local = record(
        "east",
        "us-east-1",
        [("e0", "10.0.0.1", "us-east-1a"), ("e1", "10.0.0.2", "us-east-1a")],
        not_ready=["e1"],
    )
    other = record(
        "east-b", "us-east-1", [("b0", "10.0.1.1", "us-east-1b"), ("b1", "10.0.1.2", "us-east-1b")]
    )
    t = table(service_doc(), [local, other])
    state = EndpointState()
    picks = Counter(t.route_http(facts(), state).endpoint.node for _ in range(20_000))  # type: ignore[union-attr]
    assert picks["e1"] == 0
    assert picks["e0"] / 20_000 == pytest.approx(0.70, abs=0.02)
    assert (picks["b0"] + picks["b1"]) / 20_000 == pytest.approx(0.30, abs=0.02)


def test_allowed_regions_drop_endpoints_at_compile_time() -> None:
    t = table(service_doc({"allowedRegions": ["us-west-2"]}), [EAST, WEST])
    assert {e.region for e in t.backends["web"].endpoints} == {"us-west-2"}


def test_route_allowed_regions_intersect_with_backend_ones() -> None:
    t = table(
        service_doc(
            {"allowedRegions": ["us-east-1", "us-west-2"]}, {"allowedRegions": ["us-east-1"]}
        ),
        [EAST, WEST],
    )
    state = EndpointState()
    for e in t.backends["web"].endpoints:
        if e.region == "us-east-1":
            state.set_unhealthy(e.key, True)
    d = t.route_http(facts(), state)
    assert d.endpoint is None and d.error == "no_healthy_upstream"


def test_levels_follow_zone_then_region_then_rest() -> None:
    t = table(service_doc(), [EAST, EAST_B, WEST])
    b = t.backends["web"]
    assert [{e.cluster for e in level} for level in b.levels] == [{"east"}, {"east-b"}, {"west"}]
    state = EndpointState()
    assert {t.route_http(facts(), state).endpoint.cluster for _ in range(100)} == {"east"}  # type: ignore[union-attr]


def test_priority_load_spills_by_overprovisioned_health() -> None:
    load = priority_load([2, 4], [4, 4], 1.4, 50)
    assert load.health == pytest.approx((70.0, 100.0))
    assert load.shares == pytest.approx((70.0, 30.0))
    assert not load.panic


def test_priority_load_normalises_when_total_health_is_below_100() -> None:
    load = priority_load([1, 1], [4, 8], 1.4, 50)
    assert load.health == pytest.approx((35.0, 17.5))
    assert load.shares == pytest.approx((35 / 52.5 * 100, 17.5 / 52.5 * 100))


def test_priority_load_panics_below_threshold_and_fails_with_nothing_up() -> None:
    panic = priority_load([1, 0], [10, 10], 1.4, 50)
    assert panic.panic and panic.shares == pytest.approx((50.0, 50.0))
    dead = priority_load([0, 0], [4, 4], 1.4, 50)
    assert not dead.panic and sum(dead.shares) == 0


def test_measured_spill_matches_the_rule() -> None:
    t = table(service_doc({"locality": {"prefer": "region"}}), [EAST, WEST])
    state = EndpointState()
    east = [e for e in t.backends["web"].endpoints if e.cluster == "east"]
    state.set_unhealthy(east[0].key, True)
    state.set_unhealthy(east[1].key, True)
    n = 20000
    seen = Counter(t.route_http(facts(), state).endpoint.cluster for _ in range(n))  # type: ignore[union-attr]
    assert abs(seen["east"] / n - 0.70) < 0.015
    assert all(
        t.route_http(facts(), state).endpoint.key not in {east[0].key, east[1].key}  # type: ignore[union-attr]
        for _ in range(500)
    )


def test_panic_mode_routes_over_all_endpoints_ignoring_health() -> None:
    t = table(service_doc({"locality": {"prefer": "none"}}), [EAST])
    state = EndpointState()
    eps = t.backends["web"].endpoints
    for e in eps[:3]:
        state.set_unhealthy(e.key, True)
    seen = {t.route_http(facts(), state).endpoint.key for _ in range(400)}  # type: ignore[union-attr]
    assert seen == {e.key for e in eps}
    assert any("PANIC" in s for s in explain_http(t, facts(), state).steps or [])


def test_no_available_endpoint_is_no_healthy_upstream() -> None:
    t = table(service_doc(), [EAST])
    state = EndpointState()
    for e in t.backends["web"].endpoints:
        state.eject(e.key, until=100.0)
    assert t.route_http(facts(), state).error == "no_healthy_upstream"


def test_retry_fails_over_to_the_next_level() -> None:
    t = table(service_doc({"locality": {"prefer": "region"}}), [EAST, WEST])
    state = EndpointState()
    d = t.route_http(facts(), state)
    assert d.endpoint is not None and d.endpoint.cluster == "east"
    again = t.retry_pick(d, {d.endpoint.key}, state)
    assert again is not None and again.cluster == "west"
    everything = {e.key for e in t.backends["web"].endpoints}
    assert t.retry_pick(d, everything - {"west/10.1.0.4:30080"}, state).key == "west/10.1.0.4:30080"  # type: ignore[union-attr]
