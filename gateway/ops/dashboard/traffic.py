"""Rates, error share and latency percentiles from two readings of the request counters.

Theory of operation: the workers keep cumulative counters only
(`RequestStats`: requests by route, backend, cluster and status code; one
duration histogram per route). The dashboard reads them once a tick through
the same report path as `/metrics` (merged over workers), folds each reading
into a `TrafficCounters` aggregated per backend and cluster and per route
(never per endpoint), and `traffic_rates` turns two consecutive readings
into what a person watches: requests per second, the share of 5xx answers,
p50 and p99 over the last interval, the split of each backend's traffic
over its clusters.

Counters only grow, except when a worker restarts: a counter found smaller
than before is taken as reset (Prometheus' `rate()` rule), so its whole new
value is the interval's increase and no rate is ever negative. Percentiles
are interpolated linearly inside the histogram bucket that holds them, as
Prometheus' `histogram_quantile` does; a quantile falling in the +Inf bucket
is reported as the highest finite bound.

Pure: plain values in, plain values out, no clock (the caller measures the
interval), so it is tested with numbers.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.ops.metrics import MetricsSnapshot
from gateway.ops.request_stats import DURATION_BUCKETS_S, NBUCKETS

ERROR_STATUS = 500
"""Answers at or above this status count as errors (5xx, the gateway's own 502/503/504 included)."""

BackendKey = tuple[str, str]
"""(backend, cluster)."""


Tally = tuple[int, int]
"""(requests, errors) counted so far, or over an interval: a plain tuple, as there are
tens of thousands per tick at fleet size."""
NONE: Tally = (0, 0)


@dataclass(frozen=True, slots=True)
class TrafficCounters:
    """One reading of the whole gateway's cumulative counters, aggregated for the dashboard."""

    by_backend: Mapping[BackendKey, Tally] = field(default_factory=dict)
    by_route: Mapping[str, Tally] = field(default_factory=dict)
    durations: Mapping[str, Sequence[float]] = field(default_factory=dict)
    """Per route: `NBUCKETS` non-cumulative bucket counts (the last is +Inf); a
    sum-of-seconds slot after them, if present, is ignored."""
    overall: tuple[float, ...] = (0.0,) * NBUCKETS
    """The durations of every route added up."""

    @classmethod
    def fold(cls, workers: Iterable[Mapping[str, Any]]) -> TrafficCounters:
        """Add up the workers' metrics as they report them (`MetricsSnapshot.to_json`).

        Reads the JSON form directly, one pass over each worker's request keys
        and routes, without building and merging `MetricsSnapshot`s: at fleet
        size (10,000 routes × 3 clusters × 2 codes) that halves the work.
        """
        backends: dict[BackendKey, list[int]] = {}
        routes: dict[str, list[int]] = {}
        durations: dict[str, Sequence[float]] = {}
        for metrics in workers:
            for route, backend, cluster, code, n in metrics.get("requests", ()):
                bad = n if int(code) >= ERROR_STATUS else 0
                acc = backends.get((backend, cluster))
                if acc is None:
                    backends[(backend, cluster)] = [n, bad]
                else:
                    acc[0] += n
                    acc[1] += bad
                racc = routes.get(route)
                if racc is None:
                    routes[route] = [n, bad]
                else:
                    racc[0] += n
                    racc[1] += bad
            for route, hist in metrics.get("durations", {}).items():
                seen = durations.get(route)
                if seen is not None:
                    hist = [a + b for a, b in zip(seen, hist, strict=True)]
                durations[route] = hist
        columns = zip(*durations.values(), strict=True)
        overall = tuple(sum(column) for column in columns) or (0.0,) * NBUCKETS
        return cls(
            by_backend={k: (n, bad) for k, (n, bad) in backends.items()},
            by_route={k: (n, bad) for k, (n, bad) in routes.items()},
            durations=durations,
            overall=overall[:NBUCKETS],
        )

    @classmethod
    def from_snapshot(cls, snap: MetricsSnapshot) -> TrafficCounters:
        """One snapshot's counters (a single worker's, or merged totals)."""
        return cls.fold([snap.to_json()])


@dataclass(frozen=True, slots=True)
class BackendRate:
    """One (backend, cluster) over the interval."""

    backend: str
    cluster: str
    rps: float
    errors_per_s: float
    share: float
    """Fraction of the backend's requests in the interval that went to this cluster."""
    requests: int
    """Cumulative requests (since the workers started)."""


@dataclass(frozen=True, slots=True)
class RouteRate:
    """One route over the interval."""

    route: str
    rps: float
    error_rate: float
    p50_s: float | None
    p99_s: float | None
    requests: int


@dataclass(frozen=True, slots=True)
class TrafficRates:
    """What the dashboard shows for one interval."""

    interval_s: float
    requests: int
    """Cumulative requests of the whole gateway."""
    rps: float
    errors_per_s: float
    error_rate: float
    """5xx share of the interval's answers (0 when there were none)."""
    p50_s: float | None
    p99_s: float | None
    """None when no request finished in the interval."""
    backends: tuple[BackendRate, ...]
    routes: tuple[RouteRate, ...]


def increase(previous: float, current: float) -> float:
    """A counter's increase; a smaller value means the counter restarted from zero."""
    return current - previous if current >= previous else current


def _tally_increase(previous: Tally, current: Tally) -> Tally:
    """Both counters' increases; errors never more than requests (merged workers may
    restart one at a time, so the two totals need not drop together)."""
    requests = int(increase(previous[0], current[0]))
    return requests, min(requests, int(increase(previous[1], current[1])))


def quantile_s(buckets: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of a non-cumulative duration histogram; None when empty.

    `buckets` has one count per `DURATION_BUCKETS_S` bound plus the +Inf slot.
    """
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    lower = 0.0
    for bound, count in zip(DURATION_BUCKETS_S, buckets, strict=False):
        if count > 0 and seen + count >= rank:
            return lower + (bound - lower) * max(0.0, rank - seen) / count
        seen += count
        lower = bound
    return DURATION_BUCKETS_S[-1]


def _histogram_increase(
    previous: Sequence[float] | None, current: Sequence[float]
) -> tuple[float, ...]:
    """Bucket counts added since `previous`; all of `current` when a count went down
    (a worker restarted: its counts began again from zero)."""
    now = tuple(current[:NBUCKETS])
    if previous is None or any(c < p for c, p in zip(now, previous, strict=False)):
        return now
    return tuple(c - p for c, p in zip(now, previous, strict=False))


def traffic_rates(
    previous: TrafficCounters,
    current: TrafficCounters,
    interval_s: float,
    *,
    top_backends: int = 20,
    top_routes: int = 20,
    always: Iterable[BackendKey] = (),
) -> TrafficRates:
    """Rates over `interval_s` between two readings (see the module docstring).

    Backends are ranked by their requests per second over the interval (then
    by name) and the `top_backends` first are returned with every cluster
    they have in either reading or in `always` (the (backend, cluster) pairs
    that have endpoints, so a standby cluster shows with a share of 0).
    Routes likewise, `top_routes` of them, with their own p50/p99.
    """
    seconds = max(interval_s, 1e-9)
    deltas: dict[BackendKey, Tally] = {}
    for key, now in current.by_backend.items():
        deltas[key] = _tally_increase(previous.by_backend.get(key, NONE), now)
    interval_requests = sum(n for n, _ in deltas.values())
    interval_errors = sum(bad for _, bad in deltas.values())

    clusters: dict[str, set[str]] = {}
    for backend, cluster in (*current.by_backend, *always):
        clusters.setdefault(backend, set()).add(cluster)
    per_backend = {
        name: sum(deltas.get((name, c), NONE)[0] for c in names) for name, names in clusters.items()
    }
    ranked = heapq.nsmallest(top_backends, per_backend, key=lambda n: (-per_backend[n], n))
    backend_rows: list[BackendRate] = []
    for name in ranked:
        total = per_backend[name]
        for cluster in sorted(clusters[name]):
            n, bad = deltas.get((name, cluster), NONE)
            backend_rows.append(
                BackendRate(
                    backend=name,
                    cluster=cluster,
                    rps=n / seconds,
                    errors_per_s=bad / seconds,
                    share=n / total if total else 0.0,
                    requests=current.by_backend.get((name, cluster), NONE)[0],
                )
            )

    route_deltas = {
        route: _tally_increase(previous.by_route.get(route, NONE), now)
        for route, now in current.by_route.items()
    }
    route_rows = []
    for route in heapq.nsmallest(top_routes, route_deltas, key=lambda r: (-route_deltas[r][0], r)):
        n, bad = route_deltas[route]
        hist = _histogram_increase(previous.durations.get(route), current.durations.get(route, ()))
        route_rows.append(
            RouteRate(
                route=route,
                rps=n / seconds,
                error_rate=_ratio(bad, n),
                p50_s=quantile_s(hist, 0.5),
                p99_s=quantile_s(hist, 0.99),
                requests=current.by_route[route][0],
            )
        )
    overall = _histogram_increase(previous.overall, current.overall)
    return TrafficRates(
        interval_s=interval_s,
        requests=sum(n for n, _ in current.by_backend.values()),
        rps=interval_requests / seconds,
        errors_per_s=interval_errors / seconds,
        error_rate=_ratio(interval_errors, interval_requests),
        p50_s=quantile_s(overall, 0.5),
        p99_s=quantile_s(overall, 0.99),
        backends=tuple(backend_rows),
        routes=tuple(route_rows),
    )


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
