"""Hot-path counters, snapshots, merging and the Prometheus exposition."""

from __future__ import annotations

from bisect import bisect_left

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from gateway import compiled
from gateway.ops.metrics import (
    DURATION_BUCKETS_S,
    NBUCKETS,
    MetricsSnapshot,
    ReloadStats,
    RequestStats,
    merge,
    render,
)


def _samples(snapshot: MetricsSnapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(render(snapshot).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_record_counts_by_label_tuple_and_buckets_durations() -> None:
    stats = RequestStats()
    stats.record("web", "api", "a", 200, 0.003)
    stats.record("web", "api", "a", 200, 0.0005)
    stats.record("web", "api", "b", 503, 20.0)
    assert stats.requests == {("web", "api", "a", 200): 2, ("web", "api", "b", 503): 1}
    hist = stats.durations["web"]
    assert hist[DURATION_BUCKETS_S.index(0.005)] == 1
    assert hist[DURATION_BUCKETS_S.index(0.0005)] == 1  # `le` bound is inclusive
    assert hist[len(DURATION_BUCKETS_S)] == 1  # +Inf
    assert abs(hist[-1] - 20.0035) < 1e-9


def test_exposition_has_the_documented_names_and_values() -> None:
    stats = RequestStats()
    for _ in range(3):
        stats.record("web", "api", "a", 200, 0.002)
    stats.connect_failed("a", "a/10.0.0.1:30080")
    snap = MetricsSnapshot.capture(
        stats,
        reloads=ReloadStats(success=2, failure=1, last_success_s=1700000000.0),
        pool_connections={"idle": 4, "active": 1},
        endpoint_health={("a", "a/10.0.0.1:30080"): 0, ("a", "a/10.0.0.2:30080"): 1},
        active_connections=7,
    )
    s = _samples(snap)
    labels = (("backend", "api"), ("cluster", "a"), ("code", "200"), ("route", "web"))
    assert s[("portway_requests_total", labels)] == 3
    assert s[("portway_request_duration_seconds_count", (("route", "web"),))] == 3
    assert s[("portway_request_duration_seconds_bucket", (("le", "0.001"), ("route", "web")))] == 0
    assert s[("portway_request_duration_seconds_bucket", (("le", "0.0025"), ("route", "web")))] == 3
    assert s[("portway_request_duration_seconds_bucket", (("le", "+Inf"), ("route", "web")))] == 3
    ep = (("cluster", "a"), ("endpoint", "a/10.0.0.1:30080"))
    assert s[("portway_upstream_connect_failures_total", ep)] == 1
    assert s[("portway_endpoint_health", ep)] == 0
    assert s[("portway_upstream_pool_connections", (("state", "idle"),))] == 4
    assert s[("portway_config_reloads_total", (("result", "failure"),))] == 1
    assert s[("portway_config_reloads_total", (("result", "success"),))] == 2
    assert s[("portway_config_last_reload_success_timestamp_seconds", ())] == 1700000000.0
    assert s[("portway_active_connections", ())] == 7
    hot_path = compiled.state.partition(":")[0]
    assert hot_path in ("compiled", "interpreted")
    assert s[("portway_build_info", (("hot_path", hot_path),))] == 1


def test_merge_sums_workers_and_takes_min_health() -> None:
    a, b = RequestStats(), RequestStats()
    a.record("r", "b", "c", 200, 0.01)
    b.record("r", "b", "c", 200, 0.02)
    b.record("r", "b", "c", 500, 0.02)
    sa = MetricsSnapshot.capture(a, endpoint_health={("c", "e"): 1}, active_connections=2)
    sb = MetricsSnapshot.capture(
        b, endpoint_health={("c", "e"): 0}, active_connections=3, reloads=ReloadStats(1, 0, 5.0)
    )
    total = merge([sa, sb])
    assert total.requests == {("r", "b", "c", 200): 2, ("r", "b", "c", 500): 1}
    assert sum(total.durations["r"][:-1]) == 3
    assert total.endpoint_health == {("c", "e"): 0}
    assert total.active_connections == 5
    assert total.reloads == ReloadStats(1, 0, 5.0)
    assert sa.durations["r"] != total.durations["r"]  # merge does not alias its inputs


def test_snapshot_round_trips_through_json() -> None:
    import json

    stats = RequestStats()
    stats.record("r", "b", "c", 404, 0.1)
    stats.connect_failed("c", "c/1.2.3.4:1")
    snap = MetricsSnapshot.capture(
        stats, endpoint_health={("c", "c/1.2.3.4:1"): 1}, reloads=ReloadStats(3, 1, 9.5)
    )
    again = MetricsSnapshot.from_json(json.loads(json.dumps(snap.to_json())))
    assert again == snap


def test_capture_copies_so_later_requests_do_not_change_a_snapshot() -> None:
    stats = RequestStats()
    stats.record("r", "b", "c", 200, 0.1)
    snap = MetricsSnapshot.capture(stats)
    stats.record("r", "b", "c", 200, 0.1)
    assert snap.requests[("r", "b", "c", 200)] == 1
    assert sum(snap.durations["r"][:-1]) == 1


@given(st.floats(min_value=0.0, max_value=100.0, allow_nan=False))
def test_a_duration_lands_in_the_bucket_bisect_left_names(duration: float) -> None:
    stats = RequestStats()
    stats.record("r", "b", "c", 200, duration)
    hist = stats.durations["r"]
    assert hist.index(1) == bisect_left(DURATION_BUCKETS_S, duration)
    assert hist[NBUCKETS] == duration and sum(hist[:NBUCKETS]) == 1


def test_mirror_counts_merge_round_trip_and_render() -> None:
    one = MetricsSnapshot(mirrors={("r/0", "shadow", "sent"): 2, ("r/0", "shadow", "failed"): 1})
    two = MetricsSnapshot(mirrors={("r/0", "shadow", "sent"): 3})
    merged = merge([MetricsSnapshot.from_json(one.to_json()), two])
    assert merged.mirrors == {("r/0", "shadow", "sent"): 5, ("r/0", "shadow", "failed"): 1}
    text = render(merged).decode()
    assert 'portway_mirror_requests_total{backend="shadow",result="sent",rule="r/0"} 5.0' in text
    assert "# TYPE portway_mirror_requests_total counter" in text


def test_native_lane_counts_merge_round_trip_and_render() -> None:
    one = MetricsSnapshot(lane={"fast_requests": 7, "slow_connections": 1})
    two = MetricsSnapshot(lane={"fast_requests": 3})
    merged = merge([MetricsSnapshot.from_json(one.to_json()), two])
    assert merged.lane == {"fast_requests": 10, "slow_connections": 1}
    text = render(merged).decode()
    assert 'portway_native_lane_events_total{event="fast_requests"} 10.0' in text
    assert 'portway_native_lane_events_total{event="slow_connections"} 1.0' in text
