"""Per-worker request counters, updated on the request path (compiled with it).

Plain dicts keyed by label tuples plus fixed histogram bucket arrays, touched
only from the worker's event loop; `gateway.ops.metrics` turns them into
Prometheus metric families at scrape time.
"""

from __future__ import annotations

from typing import Final

DURATION_BUCKETS_S: Final[tuple[float, ...]] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
NBUCKETS: Final = len(DURATION_BUCKETS_S) + 1
"""Histogram slots per route (the last one +Inf); the sum of seconds follows them."""

RequestKey = tuple[str, str, str, int]


class RequestStats:
    """Per-worker request counters, cheap to update (three dict lookups, a short scan).

    `durations[route]` and `backend_durations[backend]` are lists of
    `len(DURATION_BUCKETS_S) + 2` numbers: non-cumulative bucket counts (last one
    +Inf) followed by the sum of seconds. The per-backend histogram is what a
    progressive rollout judges a canary's p99 on (`gateway.rollout.window`).
    """

    __slots__ = ("backend_durations", "connect_failures", "durations", "requests")

    def __init__(self) -> None:
        self.requests: dict[RequestKey, int] = {}
        self.durations: dict[str, list[float]] = {}
        self.backend_durations: dict[str, list[float]] = {}
        self.connect_failures: dict[tuple[str, str], int] = {}

    def record(self, route: str, backend: str, cluster: str, code: int, duration_s: float) -> None:
        """Count one finished request; called from `RequestObserver.end`."""
        key = (route, backend, cluster, code)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        hist = self.durations.get(route)
        if hist is None:
            hist = self.durations[route] = [0.0] * (NBUCKETS + 1)
        per_backend = self.backend_durations.get(backend)
        if per_backend is None:
            per_backend = self.backend_durations[backend] = [0.0] * (NBUCKETS + 1)
        slot = 0
        for bound in DURATION_BUCKETS_S:  # bisect_left, as a native loop (most hit early)
            if duration_s <= bound:
                break
            slot += 1
        hist[slot] += 1
        hist[NBUCKETS] += duration_s
        per_backend[slot] += 1
        per_backend[NBUCKETS] += duration_s

    def connect_failed(self, cluster: str, endpoint: str) -> None:
        key = (cluster, endpoint)
        self.connect_failures[key] = self.connect_failures.get(key, 0) + 1
