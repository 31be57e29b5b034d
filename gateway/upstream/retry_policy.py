"""When a failed try of an HTTP request may be retried, and how long to wait first.

The rule's `Retry` names failure classes in Envoy's vocabulary; each internal
cause maps to the classes that cover it. A retry also needs: an idempotent
method (unless `idempotent_only` is off), a request body that can be sent
again (none, or fully buffered), tries left, time left before the request
deadline, and room in the worker's retry budget (Envoy: retries in flight may
be at most `percent` of requests in flight, but always `min_concurrency`).

A try that never reached an upstream (connect refused or timed out, circuit
open) is retried outside the budget: the budget exists so that retries do not
multiply the load on struggling upstreams, and moving a request that no
upstream saw adds no load anywhere. Without this, losing a whole cluster
would turn into failed requests as soon as more than `min_concurrency`
clients hit its dead NodePorts at once, which is exactly when failover must
be invisible.
"""

from __future__ import annotations

import random
from typing import Any

from gateway.http.head import IDEMPOTENT_METHODS

NEVER_SENT = frozenset({"upstream_connect_failure", "circuit_open"})

RETRY_CLASSES: dict[str, frozenset[str]] = {
    "upstream_connect_failure": frozenset({"connect-failure", "gateway-error", "5xx", "reset"}),
    "upstream_reset": frozenset({"reset", "gateway-error", "5xx"}),
    "upstream_timeout": frozenset({"reset", "gateway-error", "5xx"}),
    "upstream_protocol_error": frozenset({"reset", "gateway-error", "5xx"}),
    "circuit_open": frozenset({"connect-failure", "gateway-error"}),
    "gateway_status": frozenset({"gateway-error", "5xx"}),
    "server_status": frozenset({"5xx"}),
}


class BudgetCounters:
    """What `retry_allowed` reads about the worker: requests and retries in flight."""

    active_requests: int
    active_retries: int


def retry_allowed(ex: Any, cause: str, budget: Any, now: float) -> bool:
    """Whether exchange `ex`, whose try failed with `cause`, may be tried again."""
    rule = ex.rule
    retry = rule.retry if rule is not None else None
    if retry is None or ex.retries >= retry.attempts or ex.responded:
        return False
    if not RETRY_CLASSES.get(cause, frozenset()).intersection(retry.on):
        return False
    if retry.idempotent_only and ex.method not in IDEMPOTENT_METHODS:
        return False
    if ex.body_sent and ex.replay is None:
        return False
    if ex.upgrade:
        return False
    if now >= ex.deadline:
        return False
    if not ex.retrying and cause not in NEVER_SENT:
        allowed = max(
            retry.budget.min_concurrency, retry.budget.percent / 100.0 * budget.active_requests
        )
        if budget.active_retries >= allowed:
            return False
    return True


def backoff_s(retry: Any, retries: int, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max, base * 2**(n-1))]."""
    ceiling = min(retry.backoff_max_s, retry.backoff_base_s * (2 ** max(retries - 1, 0)))
    return (rng or random).uniform(0.0, ceiling)


def retry_delay_s(retry: Any, retries: int, cause: str, same_endpoint: bool) -> float:
    """How long to wait before the next try: none when moving a never-sent request elsewhere.

    Backoff spares a struggling upstream a hammering; a request that no
    upstream saw, going to another endpoint, has nobody to spare, and every
    millisecond of waiting shows up in users' latency during a failover.
    """
    if cause in NEVER_SENT and not same_endpoint:
        return 0.0
    return backoff_s(retry, retries)
