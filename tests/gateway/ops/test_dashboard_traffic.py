"""Dashboard rates and percentiles from two readings of the request counters, with plain values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ops.dashboard.traffic import (
    TrafficCounters,
    increase,
    quantile_s,
    traffic_rates,
)
from gateway.ops.metrics import MetricsSnapshot, RequestStats
from gateway.ops.request_stats import DURATION_BUCKETS_S, NBUCKETS


def hist(**slots: int) -> tuple[float, ...]:
    """A non-cumulative histogram: `b2=10` puts 10 requests in bucket index 2."""
    out = [0.0] * NBUCKETS
    for name, n in slots.items():
        out[int(name[1:])] = n
    return tuple(out)


def counters(
    backends: dict[tuple[str, str], tuple[int, int]],
    routes: dict[str, tuple[int, int]] | None = None,
    durations: dict[str, tuple[float, ...]] | None = None,
) -> TrafficCounters:
    durations = durations or {}
    overall = [0.0] * NBUCKETS
    for h in durations.values():
        overall = [a + b for a, b in zip(overall, h, strict=True)]
    return TrafficCounters(
        by_backend=backends, by_route=routes or {}, durations=durations, overall=tuple(overall)
    )


def test_quantile_interpolates_inside_the_bucket_that_holds_it() -> None:
    # 10 requests between 1 ms and 2.5 ms: the median sits half way
    assert quantile_s(hist(b2=10), 0.5) == pytest.approx(0.00175)
    assert quantile_s(hist(b0=50, b7=50), 0.99) == pytest.approx(0.05 + 0.05 * 0.98)
    assert quantile_s(hist(b0=1), 0.5) == pytest.approx(0.00025)  # from 0 to the first bound


def test_quantile_of_nothing_is_none_and_of_the_overflow_bucket_the_last_bound() -> None:
    assert quantile_s(hist(), 0.5) is None
    assert quantile_s(hist(b14=3), 0.99) == DURATION_BUCKETS_S[-1]


def test_counters_fold_a_metrics_snapshot_per_backend_cluster_and_route() -> None:
    stats = RequestStats()
    for _ in range(3):
        stats.record("shop", "api", "east", 200, 0.002)
    stats.record("shop", "api", "west", 503, 0.2)
    stats.record("admin", "api", "east", 404, 0.002)
    folded = TrafficCounters.from_snapshot(MetricsSnapshot.capture(stats))
    assert folded.by_backend == {("api", "east"): (4, 0), ("api", "west"): (1, 1)}
    assert folded.by_route == {"shop": (4, 1), "admin": (1, 0)}
    assert folded.durations["shop"][:NBUCKETS] == list(hist(b2=3, b8=1))
    assert folded.overall == hist(b2=4, b8=1)


def test_rates_over_the_interval_split_and_error_share() -> None:
    before = counters(
        {("api", "east"): (100, 0), ("api", "west"): (50, 5)},
        {"shop": (150, 5)},
        {"shop": hist(b2=150)},
    )
    after = counters(
        {("api", "east"): (130, 0), ("api", "west"): (60, 7)},
        {"shop": (190, 7)},
        {"shop": hist(b2=150, b6=40)},
    )
    rates = traffic_rates(before, after, 2.0)
    assert rates.requests == 190
    assert rates.rps == 20.0
    assert rates.errors_per_s == 1.0
    assert rates.error_rate == pytest.approx(2 / 40)
    # only this interval's 40 requests count: all between 25 and 50 ms
    assert 0.025 < rates.p50_s < rates.p99_s <= 0.05  # type: ignore[operator]
    east, west = rates.backends
    assert (east.cluster, east.rps, east.share, east.requests) == ("east", 15.0, 0.75, 130)
    assert (west.cluster, west.rps, west.share, west.errors_per_s) == ("west", 5.0, 0.25, 1.0)
    (shop,) = rates.routes
    assert (shop.route, shop.rps, shop.error_rate, shop.requests) == ("shop", 20.0, 0.05, 190)


def test_a_restarted_worker_counts_from_zero_never_negative() -> None:
    assert increase(100, 130) == 30
    assert increase(100, 7) == 7
    before = counters({("api", "a"): (1000, 10)}, {"r": (1000, 10)}, {"r": hist(b1=1000)})
    after = counters({("api", "a"): (40, 0)}, {"r": (40, 0)}, {"r": hist(b3=40)})
    rates = traffic_rates(before, after, 1.0)
    assert rates.rps == 40.0 and rates.errors_per_s == 0.0
    assert DURATION_BUCKETS_S[2] < rates.p50_s <= DURATION_BUCKETS_S[3]  # type: ignore[operator]


def test_standby_clusters_show_with_no_share_and_busiest_backends_come_first() -> None:
    before = counters({("api", "east"): (0, 0), ("web", "east"): (0, 0)})
    after = counters({("api", "east"): (10, 0), ("web", "east"): (30, 0), ("zzz", "a"): (0, 0)})
    rates = traffic_rates(before, after, 1.0, top_backends=2, always=[("api", "west")])
    assert [(b.backend, b.cluster, b.share) for b in rates.backends] == [
        ("web", "east", 1.0),
        ("api", "east", 1.0),
        ("api", "west", 0.0),
    ]


def test_an_idle_interval_has_no_percentiles_and_no_error_rate() -> None:
    same = counters({("api", "a"): (5, 1)}, {"r": (5, 1)}, {"r": hist(b0=5)})
    rates = traffic_rates(same, same, 1.0)
    assert (rates.rps, rates.error_rate, rates.p50_s, rates.p99_s) == (0.0, 0.0, None, None)


readings = st.dictionaries(
    st.tuples(st.sampled_from(["api", "web"]), st.sampled_from(["a", "b", "c"])),
    st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)).map(lambda t: (max(t), min(t))),
)


@given(readings, readings, st.floats(0.1, 10))
def test_rates_are_never_negative_and_each_backends_shares_sum_to_one_or_zero(
    before: dict[tuple[str, str], tuple[int, int]],
    after: dict[tuple[str, str], tuple[int, int]],
    interval_s: float,
) -> None:
    rates = traffic_rates(counters(before), counters(after), interval_s)
    assert rates.rps >= 0 and rates.errors_per_s >= 0 and 0 <= rates.error_rate <= 1
    shares: dict[str, float] = {}
    for b in rates.backends:
        assert b.rps >= 0 and b.errors_per_s >= 0
        shares[b.backend] = shares.get(b.backend, 0.0) + b.share
    for total in shares.values():
        assert total == pytest.approx(1.0) or total == 0.0


@given(st.lists(st.integers(0, 50), min_size=NBUCKETS, max_size=NBUCKETS), st.floats(0, 1))
def test_quantiles_grow_with_q_and_stay_within_the_buckets(counts: list[int], q: float) -> None:
    low, high = quantile_s(counts, q * 0.5), quantile_s(counts, q)
    if sum(counts) == 0:
        assert low is None and high is None
    else:
        assert low is not None and high is not None
        assert 0 <= low <= high <= DURATION_BUCKETS_S[-1]
