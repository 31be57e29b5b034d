"""Ejections, health changes and overflows reach /metrics, summed over workers."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.ops.metrics import MetricsSnapshot, merge, render


def test_state_change_counters_round_trip_merge_and_render() -> None:
    one = MetricsSnapshot(
        state_changes={
            ("ejection", "api", "consecutive_gateway_failure"): 2,
            ("health", "api", "unhealthy"): 1,
            ("overflow", "api", "max_requests"): 5,
        }
    )
    two = MetricsSnapshot.from_json(one.to_json())
    assert two.state_changes == one.state_changes
    text = render(merge([one, two])).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert (
        samples[
            (
                "portway_outlier_ejections_total",
                (("backend", "api"), ("reason", "consecutive_gateway_failure")),
            )
        ]
        == 4
    )
    assert (
        samples[
            ("portway_endpoint_health_changes_total", (("backend", "api"), ("to", "unhealthy")))
        ]
        == 2
    )
    assert (
        samples[
            ("portway_upstream_overflow_total", (("backend", "api"), ("limit", "max_requests")))
        ]
        == 10
    )
