"""The rollout's small pure parts: windows and p99, records, the driver lease, weights."""

from __future__ import annotations

import math

import pytest
from pydantic import TypeAdapter

from gateway.config.model import GatewayConfig
from gateway.ops.metrics import MetricsSnapshot, merge
from gateway.ops.request_stats import NBUCKETS, RequestStats
from gateway.rollout.lease import DriverLease, claim
from gateway.rollout.machine import Phase, RolloutStatus
from gateway.rollout.record import (
    RolloutRecordError,
    decode_lease,
    decode_status,
    encode_lease,
    encode_status,
)
from gateway.rollout.targets import RolloutWeights, rollout_targets, weights_for, with_weights
from gateway.rollout.window import Counters, quantile, sample_of, window


def test_the_canary_window_counts_its_route_and_backend_since_the_start_sample() -> None:
    stats = RequestStats()
    counters = Counters(stats.requests, stats.backend_durations)
    stats.record("shop", "canary", "b", 200, 0.01)
    start = sample_of(counters, "shop", "canary", 10.0)
    for _ in range(8):
        stats.record("shop", "canary", "b", 200, 0.004)
    stats.record("shop", "canary", "c", 502, 0.004)
    stats.record("shop", "stable", "a", 500, 0.004)  # another backend
    stats.record("other", "canary", "b", 500, 0.004)  # another route
    got = window(start, sample_of(counters, "shop", "canary", 20.0))
    assert (got.started_at, got.requests, got.errors) == (10.0, 9, 1)
    assert got.p99_s is not None and 0.0025 < got.p99_s <= 0.005


def test_a_counter_that_went_backwards_counts_from_zero() -> None:
    stats = RequestStats()
    counters = Counters(stats.requests, stats.backend_durations)
    for _ in range(50):
        stats.record("shop", "canary", "b", 200, 0.01)
    start = sample_of(counters, "shop", "canary", 0.0)
    restarted = RequestStats()  # a worker restarted: its counters began again
    for _ in range(5):
        restarted.record("shop", "canary", "b", 500, 0.01)
    now = sample_of(Counters(restarted.requests, restarted.backend_durations), "shop", "canary", 1)
    assert (window(start, now).requests, window(start, now).errors) == (5, 5)


def test_p99_interpolates_inside_its_bucket_and_is_infinite_past_the_last_bound() -> None:
    buckets = [0.0] * NBUCKETS
    assert quantile(0.99, buckets) is None
    buckets[4] = 100  # all in (0.005, 0.01]
    assert quantile(0.99, buckets) == pytest.approx(0.005 + 0.005 * 0.99)
    buckets[-1] = 5  # 5 of 105 slower than the largest bound
    assert quantile(0.99, buckets) == math.inf


def test_per_backend_durations_are_merged_across_workers_like_the_route_ones() -> None:
    one, two = RequestStats(), RequestStats()
    one.record("shop", "canary", "b", 200, 0.002)
    two.record("shop", "canary", "b", 200, 0.3)
    total = merge(
        MetricsSnapshot.from_json(MetricsSnapshot.capture(s).to_json()) for s in (one, two)
    )
    assert sum(total.backend_durations["canary"][:NBUCKETS]) == 2
    assert total.backend_durations["canary"][NBUCKETS] == pytest.approx(0.302)


def test_a_status_record_round_trips_and_a_foreign_one_is_refused() -> None:
    status = RolloutStatus(Phase.PROGRESSING, 1, 50.0, 1767225600.25, "step 2 of 3", "abc")
    assert decode_status(encode_status(status)) == status
    for bad in (
        "not json",
        '{"phase": "progressing"}',
        '{"v": 1, "phase": "dancing"}',
        '{"v": 1, "phase": "paused", "step": 0, "weight": 400, "since": 0}',
    ):
        with pytest.raises(RolloutRecordError):
            decode_status(bad)
    lease = DriverLease("gw-a:12", 99.5)
    assert decode_lease(encode_lease(lease)) == lease


def test_the_driver_lease_is_taken_when_free_or_lapsed_and_renewed_before_it_runs_out() -> None:
    assert claim(None, "a", 100.0, 10.0).write == DriverLease("a", 110.0)
    held = DriverLease("b", 105.0)
    assert claim(held, "a", 100.0, 10.0).drives is False
    assert claim(held, "a", 105.0, 10.0).write == DriverLease("a", 115.0)  # lapsed
    mine = DriverLease("a", 110.0)
    assert claim(mine, "a", 101.0, 10.0) == claim(mine, "a", 101.0, 10.0)
    assert claim(mine, "a", 101.0, 10.0).write is None  # 9 s of 10 left: no write
    assert claim(mine, "a", 104.0, 10.0).write == DriverLease("a", 114.0)


CONFIG = TypeAdapter(GatewayConfig).validate_python(
    {
        "routes": [
            {
                "name": "shop",
                "rules": [
                    {"backendRefs": [{"name": "api"}]},
                    {
                        "name": "v2",
                        "backendRefs": [{"name": "api"}],
                        "canary": {
                            "backend": "api-v2",
                            "sticky": True,
                            "rollout": {"steps": [{"percent": 25}, {"percent": 50}]},
                        },
                    },
                ],
            }
        ],
        "backends": [
            {"name": "api", "endpoints": [{"address": "127.0.0.1", "port": 9000}]},
            {"name": "api-v2", "endpoints": [{"address": "127.0.0.1", "port": 9001}]},
        ],
    }
)


def test_weights_land_on_the_rollout_rule_and_sticky_stops_pinning_at_the_ends() -> None:
    (target,) = rollout_targets(CONFIG)
    assert (target.name, target.canary, target.stable) == ("shop/v2", "api-v2", (("api", 1),))
    status = RolloutStatus(Phase.PROGRESSING, 0, 25.0, 0.0, "", target.spec.digest)
    weights = weights_for((target,), {"shop/v2": status})
    canary = with_weights(CONFIG, weights).routes[0].rules[1].canary
    assert canary is not None and (canary.percent, canary.sticky) == (25.0, True)
    for end in (0.0, 100.0):
        canary = with_weights(CONFIG, {"shop/v2": end}).routes[0].rules[1].canary
        assert canary is not None and (canary.percent, canary.sticky) == (end, False)
    assert with_weights(CONFIG, {}).routes[0].rules[0] == CONFIG.routes[0].rules[0]


def test_a_status_of_another_spec_weighs_nothing() -> None:
    (target,) = rollout_targets(CONFIG)
    stale = RolloutStatus(Phase.PROMOTED, 2, 100.0, 0.0, "", "another-spec")
    assert weights_for((target,), {"shop/v2": stale}) == {"shop/v2": 0.0}


def test_only_a_status_that_moves_a_weight_asks_for_a_recompile() -> None:
    (target,) = rollout_targets(CONFIG)
    rollouts = RolloutWeights()
    assert rollouts.changed(CONFIG), "nothing in force yet: the pending rollout's 0% is news"
    weighted, weights = rollouts.weighted(CONFIG)
    rollouts.in_force = weights
    assert weights == {"shop/v2": 0.0} and not rollouts.changed(CONFIG)
    paused = RolloutStatus(Phase.PAUSED, 0, 0.0, 0.0, "", target.spec.digest)
    rollouts.heard({"shop/v2": paused})
    assert not rollouts.changed(CONFIG)
    step = RolloutStatus(Phase.PROGRESSING, 0, 25.0, 0.0, "", target.spec.digest)
    rollouts.heard({"shop/v2": step})
    assert rollouts.changed(CONFIG)
    weighted, weights = rollouts.weighted(CONFIG)
    canary = weighted.routes[0].rules[1].canary
    assert weights == {"shop/v2": 25.0} and canary is not None and canary.percent == 25.0
