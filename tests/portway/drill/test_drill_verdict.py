"""Judging a drill from plain samples: failover, failback, shares, regions, latency."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.drill.scenario import Expectations, ShareBound, Window
from portway.drill.timeline import FaultWindow, buckets, window_bounds
from portway.drill.verdict import judge, measure
from portway.traffic import Sample

KILL_A = FaultWindow("kill-endpoints", "kill a", 2.0, 6.0, frozenset({"a/a-1"}), True)


def steady(start: float, end: float, served_by: str, step: float = 0.01) -> list[Sample]:
    count = round((end - start) / step)
    return [Sample(start + i * step, 200, served_by, 0.001) for i in range(count)]


def run(samples: list[Sample], expect: Expectations, windows=(KILL_A,), duration=8.0):
    m = measure(
        sorted(samples, key=lambda s: s.t),
        list(windows),
        duration,
        slow_request_s=expect.slow_request_s,
        node_regions={"a-1": "eu", "b-1": "eu", "u-1": "us"},
        allowed_regions=expect.allowed_regions,
    )
    return m, {v.name: v for v in judge(expect, m)}


def test_failover_ends_with_the_last_request_that_failed_or_reached_the_target() -> None:
    samples = steady(0, 2, "a/a-1") + steady(2.5, 6, "b/b-1") + steady(6, 8, "a/a-1")
    samples += [Sample(2.0, 200, "a/a-1", 0.001), Sample(2.4, 503, "", 0.001)]
    m, verdicts = run(samples, Expectations(max_failover_s=0.5, max_failback_s=0.1))
    assert m.faults[0].failover_s == pytest.approx(0.4)
    assert verdicts["failover: kill a"].met
    assert m.faults[0].failback_s == 0.0 and verdicts["failback: kill a"].met


def test_traffic_that_never_leaves_the_target_has_no_failover_time() -> None:
    samples = steady(0, 8, "a/a-1")
    m, verdicts = run(samples, Expectations(max_failover_s=10))
    assert m.faults[0].failover_s is None
    assert not verdicts["failover: kill a"].met
    assert verdicts["failover: kill a"].measured == "never settled"


def test_slow_requests_count_against_failover_past_the_threshold() -> None:
    samples = steady(0, 2, "a/a-1") + steady(2, 6, "b/b-1") + steady(6, 8, "a/a-1")
    samples.append(Sample(3.0, 200, "b/b-1", 0.3))
    m, _ = run(samples, Expectations(slow_request_s=0.2))
    assert m.slow_s == 0.2 and m.faults[0].failover_s == pytest.approx(1.0)
    m, _ = run(samples, Expectations())
    assert m.slow_s == 0.05  # 5 x p99 before (1 ms) is below the 50 ms floor


def test_a_target_that_never_serves_again_fails_failback() -> None:
    samples = steady(0, 2, "a/a-1") + steady(2, 8, "b/b-1")
    _, verdicts = run(samples, Expectations(max_failback_s=2))
    assert verdicts["failback: kill a"].measured == "not seen"
    assert not verdicts["failback: kill a"].met


def test_requests_outside_the_allowed_regions_are_counted() -> None:
    samples = [*steady(0, 8, "b/b-1"), Sample(4.0, 200, "us/u-1", 0.001)]
    m, verdicts = run(samples, Expectations(allowed_regions=("eu",)))
    assert m.outside_regions == 1
    assert not verdicts["traffic within allowedRegions"].met


def test_shares_are_judged_per_window_and_per_stretch() -> None:
    samples = steady(0, 2, "a/a-1") + steady(2, 6, "b/b-1") + steady(6, 8, "a/a-1")
    bounds = (
        ShareBound(label="a", window=Window.BEFORE, min=0.99),
        ShareBound(label="b", window=Window.DURING, min=0.99),
        ShareBound(label="a", from_s=6.5, to_s=8.0, min=0.99),
        ShareBound(label="a", window=Window.AFTER, max=0.5),
    )
    _, verdicts = run(samples, Expectations(shares=bounds))
    met = {name: v.met for name, v in verdicts.items()}
    assert met == {
        "share of a before": True,
        "share of b during": True,
        "share of a 6.5-8 s": True,
        "share of a after": False,
    }


def test_failed_requests_and_p99_in_and_after_the_fault() -> None:
    samples = steady(0, 2, "a/a-1") + steady(2, 6, "b/b-1") + steady(6, 8, "a/a-1")
    samples += [Sample(3.0, 0, "", 0.5, "ClientConnectorError")] * 3
    expect = Expectations(max_failed_requests=2, max_p99_in_fault_ms=100, max_p99_after_fault_ms=5)
    m, verdicts = run(samples, expect)
    assert verdicts["failed requests"].measured == f"3 of {m.total.requests}"
    assert not verdicts["failed requests"].met
    assert verdicts["p99 after the fault"].met
    assert m.windows[Window.DURING].p99_ms == 1.0  # 3 of 403 are slow: above the 99th rank


def test_windows_follow_the_first_fault_and_the_last_recovery() -> None:
    late = FaultWindow("slow", "slow", 3.0, None, frozenset(), False)
    assert window_bounds([KILL_A], 8.0) == {
        Window.BEFORE: (0.0, 2.0),
        Window.DURING: (2.0, 6.0),
        Window.AFTER: (6.0, 8.0),
    }
    assert window_bounds([KILL_A, late], 8.0)[Window.AFTER] == (8.0, 8.0)
    assert window_bounds([], 8.0)[Window.BEFORE] == (0.0, 8.0)


@given(
    st.lists(
        st.tuples(
            st.floats(0, 9.99),
            st.sampled_from([200, 503, 0]),
            st.sampled_from(["a/a-1", "b/b-1", ""]),
        ),
        max_size=200,
    )
)
def test_buckets_count_every_request_of_the_drill_once(rows: list[tuple[float, int, str]]) -> None:
    samples = [Sample(t, status, by if status == 200 else "", 0.001) for t, status, by in rows]
    out = buckets(samples, 10.0)
    assert sum(b.requests for b in out) == len(samples)
    assert sum(b.failed for b in out) == sum(1 for s in samples if s.failed)
    assert all(b.width_s == out[0].width_s for b in out)
