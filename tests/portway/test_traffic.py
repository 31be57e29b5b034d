"""What users saw: the pure summary of client samples."""

from __future__ import annotations

import pytest

from portway.traffic import Sample, percentile, summarize


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 99) == 0.0


def test_summary_counts_failures_and_shares_by_cluster() -> None:
    samples = [
        Sample(0.0, 200, "alpha/a1", 0.001),
        Sample(0.1, 200, "alpha/a2", 0.002),
        Sample(0.2, 200, "beta/b1", 0.003),
        Sample(0.3, 503, "", 0.004, "no_healthy_upstream"),
        Sample(0.4, 0, "", 5.0, "ClientConnectorError"),
    ]
    s = summarize(samples)
    assert s.requests == 5 and s.failed == 2
    assert s.share == pytest.approx({"alpha": 2 / 3, "beta": 1 / 3})
    assert s.errors == {"no_healthy_upstream": 1, "ClientConnectorError": 1}
    assert s.p50_ms == pytest.approx(3.0) and s.p99_ms == pytest.approx(5000.0)


def test_a_4xx_answer_is_not_a_failure_of_the_gateway() -> None:
    assert not Sample(0.0, 404, "", 0.001).failed
    assert Sample(0.0, 502, "", 0.001).failed
