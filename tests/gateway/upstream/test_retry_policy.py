"""Retry timing: backoff where it protects an upstream, none where it only adds latency."""

from __future__ import annotations

from gateway.config.model import Retry
from gateway.upstream.retry_policy import retry_delay_s

RETRY = Retry(backoff_base_s=0.5, backoff_max_s=0.5)


def test_a_request_no_upstream_saw_moves_to_another_endpoint_at_once() -> None:
    assert retry_delay_s(RETRY, 1, "upstream_connect_failure", same_endpoint=False) == 0.0
    assert retry_delay_s(RETRY, 1, "circuit_open", same_endpoint=False) == 0.0


def test_backoff_applies_to_the_same_endpoint_and_to_requests_an_upstream_saw() -> None:
    delays = [retry_delay_s(RETRY, 3, "upstream_connect_failure", True) for _ in range(200)]
    assert max(delays) > 0.0 and all(0.0 <= d <= 0.5 for d in delays)
    delays = [retry_delay_s(RETRY, 3, "upstream_reset", False) for _ in range(200)]
    assert max(delays) > 0.0 and all(0.0 <= d <= 0.5 for d in delays)
