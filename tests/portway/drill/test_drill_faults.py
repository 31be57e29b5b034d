"""Reading a gateway's /metrics for the registry-outage probe (`faults.registry_down`)."""

from __future__ import annotations

import pytest

from portway.drill.faults import registry_down

METRICS = r"""# HELP portway_requests_total Requests answered
# TYPE portway_requests_total counter
portway_requests_total{backend="web",cluster="a",code="200",route="say \"hi\" {now}"} 1204.0
portway_requests_total{backend="web",cluster="b",code="503",route="C:\\dir\nline"} 3.0
# HELP portway_request_duration_seconds Request duration
# TYPE portway_request_duration_seconds histogram
portway_request_duration_seconds_bucket{le="0.005",route="r"} 1100.0
portway_request_duration_seconds_bucket{le="0.05",route="r"} 1203.0
portway_request_duration_seconds_bucket{le="+Inf",route="r"} 1207.0
portway_request_duration_seconds_count{route="r"} 1207.0
portway_request_duration_seconds_sum{route="r"} 2.5
# HELP portway_registry_records Records in the feed
# TYPE portway_registry_records gauge
portway_registry_records{backend="files"} 0.0
# HELP portway_registry_up 1 while the registry answers
# TYPE portway_registry_up gauge
portway_registry_up{backend="files"} UP
# HELP portway_backend_endpoints_available Endpoints that may take traffic.
# TYPE portway_backend_endpoints_available gauge
portway_backend_endpoints_available{backend="web",cluster="a"} 0
"""


@pytest.mark.parametrize(("up", "down"), [("1.0", False), ("0.0", True), ("0", True)])
def test_the_registry_is_down_when_its_up_gauge_is_zero(up: str, down: bool) -> None:
    assert registry_down(METRICS.replace("UP", up)) is down


def test_one_feed_down_among_several_is_a_registry_down() -> None:
    text = METRICS.replace("UP", '1.0\nportway_registry_up{backend="etcd \\"b\\""} 0.0')
    assert registry_down(text)


def test_zeros_of_other_metrics_and_a_missing_gauge_are_not_a_registry_down() -> None:
    without = "".join(line for line in METRICS.splitlines(True) if "registry_up" not in line)
    assert "portway_registry_records" in without and not registry_down(without)


def test_an_error_page_is_not_a_registry_down_and_a_broken_gauge_line_raises() -> None:
    assert not registry_down("404: Not Found")
    with pytest.raises(ValueError):
        registry_down('portway_registry_up{backend="files} 0.0\n')
