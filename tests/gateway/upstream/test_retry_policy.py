"""Retry timing: backoff where it protects an upstream, none where it only adds latency."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.config.model import Retry
from gateway.upstream.retry_policy import RetryBudget, retry_delay_s

RETRY = Retry(backoff_base_s=0.5, backoff_max_s=0.5)


def test_a_request_no_upstream_saw_moves_to_another_endpoint_at_once() -> None:
    assert retry_delay_s(RETRY, 1, "upstream_connect_failure", same_endpoint=False) == 0.0
    assert retry_delay_s(RETRY, 1, "overflow", same_endpoint=False) == 0.0


def test_backoff_applies_to_the_same_endpoint_and_to_requests_an_upstream_saw() -> None:
    delays = [retry_delay_s(RETRY, 3, "upstream_connect_failure", True) for _ in range(200)]
    assert max(delays) > 0.0 and all(0.0 <= d <= 0.5 for d in delays)
    delays = [retry_delay_s(RETRY, 3, "upstream_reset", False) for _ in range(200)]
    assert max(delays) > 0.0 and all(0.0 <= d <= 0.5 for d in delays)


def test_budget_allows_a_burst_up_to_percent_of_the_last_windows_answers() -> None:
    budget = RetryBudget()
    budget.allow(0.0, 20.0, 3, 0, 0)  # opens the first window
    budget.answered = 500  # one second at 500 rps
    now = 1.0
    granted = sum(budget.allow(now, 20.0, 3, 50, 50 + i) for i in range(200))
    assert 95 <= granted <= 105  # ~20 % of the 500 answers, though 50 were in flight


def test_budget_holds_sustained_failure_to_percent_extra_load() -> None:
    budget = RetryBudget()
    now, granted, answered = 0.0, 0, 0
    for _ in range(10_000):  # 10 s at 1000 rps, every try failing and asking for a retry
        now += 0.001
        budget.answered += 1
        answered += 1
        granted += budget.allow(now, 20.0, 3, 100, 100)
    assert granted <= 0.21 * answered


@given(
    percent=st.floats(0, 100),
    min_concurrency=st.integers(0, 10),
    active=st.integers(0, 1000),
)
def test_envoys_concurrency_rule_always_holds(
    percent: float, min_concurrency: int, active: int
) -> None:
    budget = RetryBudget()
    floor = max(min_concurrency, percent / 100.0 * active)
    retries = int(floor) - 1
    if retries >= 0:
        assert budget.allow(0.0, percent, min_concurrency, active, retries)
