"""Load balancer policies, consistent hashing and session affinity."""

from __future__ import annotations

from collections import Counter
from random import Random
from typing import Any

from routing_builders import WEB, facts, table

from gateway.routing.endpoints import Endpoint, EndpointState
from gateway.routing.maglev import MaglevTable, next_prime
from gateway.routing.picker import LeastRequestPicker, RoundRobinPicker, smooth_wrr_schedule
from gateway.routing.ring_hash import HashRing


def _eps(n: int) -> list[Endpoint]:
    return [Endpoint("10.0.0.1", 30000 + i, "c") for i in range(n)]


def _doc(lb: dict[str, Any], n: int = 5, affinity: dict[str, Any] | None = None) -> dict[str, Any]:
    backend: dict[str, Any] = {
        "name": "b",
        "endpoints": [{"address": "127.0.0.1", "port": 9000 + i} for i in range(n)],
        "loadBalancer": lb,
    }
    if affinity:
        backend["sessionAffinity"] = affinity
    return {
        "listeners": [WEB],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "b"}]}]}],
        "backends": [backend],
    }


def test_smooth_wrr_is_nginx_sequence() -> None:
    assert smooth_wrr_schedule([5, 1, 1]) == [0, 0, 1, 0, 2, 0, 0]


def test_round_robin_rotates_and_honours_weights() -> None:
    eps = _eps(3)
    p = RoundRobinPicker(eps)
    state, rng = EndpointState(), Random(1)
    assert [p.pick(state, rng, 0) for _ in range(6)] == eps + eps
    heavy = [Endpoint("10.0.0.1", 1, "c", weight=3), Endpoint("10.0.0.1", 2, "c")]
    weighted = RoundRobinPicker(heavy)
    picks = Counter(weighted.pick(state, rng, 0).port for _ in range(400))  # type: ignore[union-attr]
    assert picks == {1: 300, 2: 100}


def test_round_robin_skips_unavailable_endpoints() -> None:
    t = table(_doc({"policy": "round_robin"}, 3))
    state = EndpointState()
    dead = t.backends["b"].endpoints[1].key
    state.set_unhealthy(dead, True)
    assert dead not in {t.route_http(facts(), state).endpoint.key for _ in range(30)}  # type: ignore[union-attr]


def test_least_request_prefers_the_idle_endpoint() -> None:
    eps = _eps(2)
    state = EndpointState(in_flight={eps[0].key: 50})
    p = LeastRequestPicker(eps, choices=2)
    rng = Random(3)
    picks = Counter(p.pick(state, rng, 0).key for _ in range(1000))  # type: ignore[union-attr]
    assert picks[eps[1].key] > 700


def test_ring_hash_is_sticky_per_client_and_falls_back_to_client_ip() -> None:
    t = table(_doc({"policy": "ring_hash", "hashOn": {"source": "header", "name": "x-user"}}))
    state = EndpointState()
    a = {t.route_http(facts(headers={"x-user": "alice"}), state).endpoint.key for _ in range(20)}  # type: ignore[union-attr]
    assert len(a) == 1
    by_ip = {t.route_http(facts(client_ip="198.51.100.9"), state).endpoint.key for _ in range(20)}  # type: ignore[union-attr]
    assert len(by_ip) == 1


def test_hash_pickers_walk_past_unavailable_endpoints() -> None:
    for policy in ("ring_hash", "maglev"):
        t = table(_doc({"policy": policy, "maglevTableSize": 251}))
        state = EndpointState()
        first = t.route_http(facts(), state).endpoint
        assert first is not None
        state.set_unhealthy(first.key, True)
        second = t.route_http(facts(), state).endpoint
        assert second is not None and second.key != first.key


def _moved(before: dict[int, str], after: dict[int, str]) -> float:
    return sum(before[k] != after[k] for k in before) / len(before)


def test_ring_hash_and_maglev_move_about_one_nth_when_an_endpoint_leaves() -> None:
    n = 10
    eps = _eps(n)
    rng = Random(5)
    keys = [rng.getrandbits(64) for _ in range(5000)]
    for build in (lambda e: HashRing(e, 1024), lambda e: MaglevTable(e, 2003)):
        full = build(eps)
        smaller = build(eps[1:])
        before = {k: full.lookup(k).key for k in keys}  # type: ignore[union-attr]
        rebuilt = {k: smaller.lookup(k).key for k in keys}  # type: ignore[union-attr]
        skipped = {k: full.lookup(k, {e.key for e in eps[1:]}).key for k in keys}  # type: ignore[union-attr]
        assert _moved(before, rebuilt) <= 1 / n + 0.05
        assert _moved(before, skipped) <= 1 / n + 0.05


def test_maglev_table_size_is_prime() -> None:
    assert MaglevTable(_eps(3), 1000).size == next_prime(1000) == 1009


def test_client_ip_affinity_pins_until_timeout() -> None:
    t = table(_doc({"policy": "round_robin"}, 5, {"type": "ClientIP", "timeout": "10s"}))
    state = EndpointState()
    first = t.route_http(facts(), state, now=0.0).endpoint
    assert first is not None
    for i in range(1, 20):
        assert t.route_http(facts(), state, now=float(i)).endpoint == first
    later = {t.route_http(facts(), state, now=100.0 + 20 * i).endpoint for i in range(10)}
    assert len(later) > 1


def test_affinity_moves_when_the_pinned_endpoint_goes_down() -> None:
    t = table(_doc({"policy": "random"}, 3, {"type": "ClientIP"}))
    state = EndpointState()
    first = t.route_http(facts(), state, now=0.0).endpoint
    assert first is not None
    state.set_unhealthy(first.key, True)
    assert t.route_http(facts(), state, now=1.0).endpoint != first


def test_affinity_memory_is_bounded() -> None:
    t = table(_doc({"policy": "random"}, 3, {"type": "ClientIP"}))
    state = EndpointState()
    state.affinity.max_entries = 100
    for i in range(500):
        t.route_http(facts(client_ip=f"10.9.{i // 250}.{i % 250}"), state, now=0.0)
    assert len(state.affinity) == 100


def test_warm_builds_hash_tables_before_any_request() -> None:
    """A Maglev table takes tens of ms to fill: `warm` does it so no request waits."""
    t = table(_doc({"policy": "maglev"}))
    backend = t.backends["b"]
    assert backend._cache.hash_tables == {}
    t.warm()
    built = dict(backend._cache.hash_tables)
    assert len(built) == len(backend.levels) and all(
        isinstance(v, MaglevTable) for v in built.values()
    )
    state = EndpointState()
    assert t.route_http(facts(), state).endpoint is not None
    assert backend._cache.hash_tables == built, "the request reused the warmed tables"
