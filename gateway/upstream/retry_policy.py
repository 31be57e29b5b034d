"""When a failed try of an HTTP request may be retried, and how long to wait first.

The rule's `Retry` names failure classes in Envoy's vocabulary; each internal
cause maps to the classes that cover it. A retry also needs: an idempotent
method (unless `idempotent_only` is off), a request body that can be sent
again (none, or fully buffered), tries left, time left before the request
deadline, and room in the worker's retry budget.

The budget (`RetryBudget`) exists so that retries do not multiply the load on
struggling upstreams under sustained failure, and must not fail a burst. A
retry may go when any of these holds, checked in order:

1. the try never reached an upstream (connect refused or timed out, circuit
   open): moving a request no upstream saw adds no load anywhere;
2. the endpoint that failed is already out of rotation (ejected by outlier
   detection or failed by health checks): the retry moves off a known-bad
   endpoint onto endpoints routing still trusts, which is failover, not a
   storm; at most `maxEjectionPercent` of a backend can be out, so under
   sustained failure of everything most retries still pay rule 3 or 4;
3. Envoy's concurrency rule: retries in flight below max(`min_concurrency`,
   `percent` of requests in flight);
4. a short-window allowance (Finagle's retry budget): retries started in the
   last `WINDOW_S` below `percent` of the answers seen in that window (a
   sliding estimate over two buckets). When every in-flight request to one
   node fails at once, rule 3 alone refuses all but a few (its allowance is a
   fraction of what is in flight *now*); the window remembers the last
   second's traffic, so a burst up to `percent` of one second's requests is
   retried, while sustained failure is held to `percent` extra load.
"""

from __future__ import annotations

import random
from typing import Any, Final

from gateway.outcome import ErrorKind

IDEMPOTENT_METHODS: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
"""The methods a request may be sent again with after a failed try (RFC 9110 9.2.2: an
idempotent request can be repeated automatically after a communication failure)."""

NEVER_SENT = frozenset({ErrorKind.UPSTREAM_CONNECT_FAILURE, ErrorKind.OVERFLOW})

RETRY_CLASSES: dict[str, frozenset[str]] = {
    ErrorKind.UPSTREAM_CONNECT_FAILURE: frozenset(
        {"connect-failure", "gateway-error", "5xx", "reset"}
    ),
    ErrorKind.UPSTREAM_RESET: frozenset({"reset", "gateway-error", "5xx"}),
    ErrorKind.UPSTREAM_TIMEOUT: frozenset({"reset", "gateway-error", "5xx"}),
    ErrorKind.UPSTREAM_PROTOCOL_ERROR: frozenset({"reset", "gateway-error", "5xx"}),
    ErrorKind.OVERFLOW: frozenset({"connect-failure", "gateway-error"}),
    ErrorKind.GATEWAY_STATUS: frozenset({"gateway-error", "5xx"}),
    ErrorKind.SERVER_STATUS: frozenset({"5xx"}),
}
"""The rule's `retry.on` classes (Envoy's names) that cover each `outcome.RETRY_CAUSES` cause."""


WINDOW_S: Final = 1.0


class RetryBudget:
    """The worker's retry allowance (module docstring, rules 3 and 4); clock injected.

    `answered` is bumped by the response path once per upstream answer (one
    integer add, no clock read); buckets roll lazily when `allow` is asked.
    """

    __slots__ = ("answered", "prev_answered", "prev_retries", "retries", "started_at")

    def __init__(self) -> None:
        self.started_at = 0.0
        self.answered = 0
        self.retries = 0
        self.prev_answered = 0
        self.prev_retries = 0

    def _roll(self, now: float) -> float:
        elapsed = now - self.started_at
        if elapsed >= WINDOW_S:
            if elapsed >= 2 * WINDOW_S:
                self.prev_answered = self.prev_retries = 0
            else:
                self.prev_answered, self.prev_retries = self.answered, self.retries
            self.answered = self.retries = 0
            self.started_at = now
            elapsed = 0.0
        return elapsed / WINDOW_S

    def allow(
        self,
        now: float,
        percent: float,
        min_concurrency: int,
        active_requests: int,
        active_retries: int,
    ) -> bool:
        """Whether one more retry fits (rule 3 or 4); a granted retry is counted."""
        frac = self._roll(now)
        ratio = percent / 100.0
        ok = active_retries < max(min_concurrency, ratio * active_requests)
        if not ok:
            answered = self.prev_answered * (1.0 - frac) + self.answered
            retries = self.prev_retries * (1.0 - frac) + self.retries
            ok = retries < ratio * answered
        if ok:
            self.retries += 1
        return ok


def retry_allowed(
    ex: Any, cause: str, pools: Any, now: float, *, endpoint_out: bool = False
) -> bool:
    """Whether exchange `ex`, whose try failed with `cause`, may be tried again.

    `pools` carries `active_requests`, `active_retries` and the `budget`;
    `endpoint_out` says the endpoint that failed is out of rotation now.
    """
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
    if cause in NEVER_SENT or endpoint_out:
        return True
    budget: RetryBudget = pools.budget
    return budget.allow(
        now,
        retry.budget.percent,
        retry.budget.min_concurrency,
        pools.active_requests,
        pools.active_retries,
    )


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
