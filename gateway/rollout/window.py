"""The canary's measurements over a step: counter samples, their difference, a p99.

The gateway already counts every finished request (`gateway.ops.request_stats`):
requests by (route, backend, cluster, code), and a duration histogram per
backend. A rollout's judgement needs those numbers for one interval, so the
driver keeps a `Sample` of the canary's counters taken when the interval
began and subtracts it from a sample taken now (`window`). Counters only
grow, except when a worker restarts; a counter found lower than at the start
counts from zero (its requests since the restart), never as a negative.

The p99 comes from the histogram as Prometheus' `histogram_quantile` computes
it: the bucket where the cumulative count crosses 99%, interpolated linearly
inside it; a quantile that falls in the +Inf bucket is +Inf (slower than the
largest bound), which no latency limit passes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.ops.request_stats import DURATION_BUCKETS_S, NBUCKETS, RequestKey
from gateway.rollout.machine import Window

ERROR_STATUS = 500
"""Responses at or above this status count as the canary failing."""


@dataclass(frozen=True, slots=True)
class Counters:
    """The counters a sample is read from: one worker's live ones, or a merged report."""

    requests: Mapping[RequestKey, int]
    backend_durations: Mapping[str, Sequence[float]]
    """Per backend: non-cumulative bucket counts (last one +Inf), then the sum of seconds."""


@dataclass(frozen=True, slots=True)
class Sample:
    """A backend's cumulative counters on one route at time `at`."""

    at: float
    requests: int
    errors: int
    buckets: tuple[float, ...]


def sample_of(counters: Counters, route: str, backend: str, at: float) -> Sample:
    """The counters of `backend`'s requests on `route` (all clusters, all codes)."""
    requests = errors = 0
    for (r, b, _cluster, code), n in counters.requests.items():
        if r == route and b == backend:
            requests += n
            if code >= ERROR_STATUS:
                errors += n
    hist = counters.backend_durations.get(backend)
    buckets = tuple(hist[:NBUCKETS]) if hist else (0.0,) * NBUCKETS
    return Sample(at, requests, errors, buckets)


def window(start: Sample, now: Sample) -> Window:
    """What happened between two samples of the same counters."""
    requests = int(_since(start.requests, now.requests))
    errors = min(int(_since(start.errors, now.errors)), requests)
    buckets = tuple(_since(a, b) for a, b in zip(start.buckets, now.buckets, strict=True))
    return Window(start.at, requests, errors, quantile(0.99, buckets))


def _since(start: float, now: float) -> float:
    return now - start if now >= start else now


def quantile(q: float, buckets: Sequence[float]) -> float | None:
    """The `q` quantile of non-cumulative bucket counts over `DURATION_BUCKETS_S` (+Inf last).

    None when the histogram is empty.
    """
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    cumulative = 0.0
    lower = 0.0
    for i, count in enumerate(buckets):
        if i >= len(DURATION_BUCKETS_S):
            return math.inf
        upper = DURATION_BUCKETS_S[i]
        if count > 0 and cumulative + count >= rank:
            return lower + (upper - lower) * (rank - cumulative) / count
        cumulative += count
        lower = upper
    return math.inf
