"""Hypothesis properties of the routing core."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from routing_builders import WEB, config, facts, record, table

from gateway.routing.compiler import compile_table
from gateway.routing.endpoints import EndpointState
from gateway.routing.locality import priority_load
from portway.model import ServiceRecord

REGIONS = ("eu-west-1", "eu-central-1", "us-east-1")
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _records(sizes: list[int]) -> list[ServiceRecord]:
    return [
        record(
            f"c{i}",
            REGIONS[i % len(REGIONS)],
            [
                (f"n{j}", f"10.{i}.0.{j + 1}", f"{REGIONS[i % len(REGIONS)]}{'ab'[j % 2]}")
                for j in range(n)
            ],
        )
        for i, n in enumerate(sizes)
    ]


def _doc(
    backend: dict[str, Any] | None = None, route: dict[str, Any] | None = None
) -> dict[str, Any]:
    b = {"name": "web", "service": {"namespace": "shop", "name": "web", "port": "http"}}
    return {
        "gateway": {"region": "eu-west-1", "zone": "eu-west-1a"},
        "listeners": [WEB],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "web"}]}], **(route or {})}],
        "backends": [{**b, **(backend or {})}],
    }


@FAST
@given(weights=st.lists(st.integers(1, 20), min_size=2, max_size=4))
def test_weighted_split_converges_within_one_percent(weights: list[int]) -> None:
    doc = {
        "listeners": [WEB],
        "routes": [
            {
                "name": "r",
                "rules": [
                    {"backendRefs": [{"name": f"b{i}", "weight": w} for i, w in enumerate(weights)]}
                ],
            }
        ],
        "backends": [
            {"name": f"b{i}", "endpoints": [{"address": "127.0.0.1", "port": 9000 + i}]}
            for i in range(len(weights))
        ],
    }
    t = table(doc)
    state = EndpointState()
    f = facts()
    n = 100_000
    seen = Counter(t.route_http(f, state).backend.name for _ in range(n))  # type: ignore[union-attr]
    total = sum(weights)
    for i, w in enumerate(weights):
        assert abs(seen[f"b{i}"] / n - w / total) < 0.01


@FAST
@given(
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=5),
    backend_regions=st.sets(st.sampled_from(REGIONS), min_size=1),
    route_regions=st.sets(st.sampled_from(REGIONS)),
    down=st.sets(st.integers(0, 30)),
    policy=st.sampled_from(["round_robin", "random", "least_request", "ring_hash", "maglev"]),
)
def test_no_pick_ever_leaves_the_allowed_regions(
    sizes: list[int],
    backend_regions: set[str],
    route_regions: set[str],
    down: set[int],
    policy: str,
) -> None:
    t = table(
        _doc(
            {
                "allowedRegions": sorted(backend_regions),
                "loadBalancer": {"policy": policy, "maglevTableSize": 251},
            },
            {"allowedRegions": sorted(route_regions)},
        ),
        _records(sizes),
    )
    allowed = backend_regions & route_regions if route_regions else backend_regions
    state = EndpointState()
    eps = [e for b in [*t.backends.values(), *t.variants.values()] for e in b.endpoints]
    for i, e in enumerate(eps):
        if i in down:
            state.set_unhealthy(e.key, True)
    for i in range(60):
        d = t.route_http(facts(client_ip=f"198.51.100.{i}"), state)
        if d.endpoint is not None:
            assert d.endpoint.region in allowed
            retry = t.retry_pick(d, {d.endpoint.key}, state)
            assert retry is None or retry.region in allowed


@FAST
@given(sizes=st.lists(st.integers(0, 6), min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_compile_is_deterministic_and_independent_of_record_order(
    sizes: list[int], seed: int
) -> None:
    records = _records(sizes)
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    cfg = config(_doc())
    first = compile_table(cfg, records, seed=1)
    assert first == compile_table(cfg, shuffled, seed=1)
    assert first.describe() == compile_table(cfg, list(reversed(records)), seed=2).describe()


@FAST
@given(
    up0=st.integers(0, 10),
    up1=st.integers(0, 10),
    factor=st.sampled_from([1.0, 1.4, 2.0]),
)
def test_measured_level_shares_follow_the_overprovisioning_rule(
    up0: int, up1: int, factor: float
) -> None:
    t = table(
        _doc(
            {
                "locality": {
                    "prefer": "region",
                    "overprovisioningFactor": factor,
                    "panicThreshold": 0,
                }
            }
        ),
        _records([10, 10]),
    )
    state = EndpointState()
    for e in t.backends["web"].endpoints:
        up = up0 if e.cluster == "c0" else up1
        if int(e.node[1:]) >= up:
            state.set_unhealthy(e.key, True)
    n = 20_000
    seen = Counter()
    for _ in range(n):
        d = t.route_http(facts(), state)
        seen[d.endpoint.cluster if d.endpoint else None] += 1
    if up0 + up1 == 0:
        assert seen[None] == n
        return
    h0 = min(100.0, 100 * up0 / 10 * factor)
    h1 = min(100.0, 100 * up1 / 10 * factor)
    total = min(100.0, h0 + h1)
    expected0 = min(100.0, h0 * 100 / total)
    assert abs(seen["c0"] / n * 100 - expected0) < 1.5
    assert priority_load([up0, up1], [10, 10], factor, 0).shares[0] == expected0
