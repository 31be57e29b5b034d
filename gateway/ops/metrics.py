"""Prometheus metrics without paying prometheus_client's price on the request path.

Theory of operation: the request path has ~16 µs in total, and
`Counter.labels(...).inc()` alone costs several. So each worker counts into
`RequestStats`, plain dicts keyed by label tuples plus fixed histogram bucket
arrays filled with `bisect`, touched only from the worker's event loop. At
scrape time a `MetricsSnapshot` is taken (a JSON-able value, so a supervisor
can collect one per worker over a pipe and `merge` them into totals) and
`SnapshotCollector` turns it into Prometheus metric families.

Metric names (DESIGN.md conventions): `portway_requests_total{route,backend,
cluster,code}`, `portway_request_duration_seconds{route}`,
`portway_backend_request_duration_seconds{backend}`,
`portway_upstream_connect_failures_total{cluster,endpoint}`,
`portway_upstream_pool_connections{state}`, `portway_config_reloads_total
{result}`, `portway_config_last_reload_success_timestamp_seconds`,
`portway_backend_endpoints{backend,cluster}` and
`portway_backend_endpoints_available{backend,cluster}` (bounded cardinality,
always), `portway_endpoint_health{cluster,endpoint}` (per endpoint: only when
the scrape asks, `/metrics?endpoints=1`), `portway_active_connections`,
`portway_build_info{hot_path}`, `portway_outlier_ejections_total{backend,reason}`,
`portway_endpoint_health_changes_total{backend,to}`, `portway_upstream_overflow_total
{backend,limit}`, `portway_tls_certificate_expiry_seconds{listener,
cert_file}` (seconds until a served certificate's notAfter; negative once expired),
`portway_mirror_requests_total{rule,backend,result}` (request mirrors' copies:
sent, failed, dropped, skipped), `portway_native_lane_events_total{event}` (the
native socket lane: accepted connections, fast request heads, connections moved to
the Python parser, upstream sockets opened and reused).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway import compiled
from gateway.ops.backend_health import backend_exposition
from gateway.ops.request_stats import DURATION_BUCKETS_S, NBUCKETS, RequestKey, RequestStats

__all__ = [
    "DURATION_BUCKETS_S",
    "NBUCKETS",
    "MetricsSnapshot",
    "ReloadStats",
    "RequestStats",
    "SnapshotCollector",
    "merge",
    "render",
]


@dataclass(slots=True)
class ReloadStats:
    """Config reload outcomes, kept by the reloader."""

    success: int = 0
    failure: int = 0
    last_success_s: float = 0.0


@dataclass(slots=True)
class MetricsSnapshot:
    """Everything `/metrics` shows, as plain values (one worker's, or merged totals)."""

    requests: dict[RequestKey, int] = field(default_factory=dict)
    durations: dict[str, list[float]] = field(default_factory=dict)
    backend_durations: dict[str, list[float]] = field(default_factory=dict)
    connect_failures: dict[tuple[str, str], int] = field(default_factory=dict)
    pool_connections: dict[str, int] = field(default_factory=dict)
    endpoint_health: dict[tuple[str, str], int] = field(default_factory=dict)
    backend_endpoints: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    """(available, total) endpoints per (backend, cluster)."""
    backend_endpoints_text: str | None = None
    """The same as exposition text, when one process rendered it itself
    (`BackendCounter.exposition`); kept by `merge` only from a lone snapshot."""
    active_connections: int = 0
    reloads: ReloadStats = field(default_factory=ReloadStats)
    tls_expiry: dict[tuple[str, str], float] = field(default_factory=dict)
    """Seconds left per (listener, certificate file) at capture time."""
    state_changes: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(kind, backend, label) → count; kinds and their metrics in `STATE_CHANGE_METRICS`."""
    mirrors: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(rule, mirror backend, result) → copies (`http.filters.mirror.MirrorLimit.totals`)."""
    lane: dict[str, int] = field(default_factory=dict)
    """Native socket lane counters by event (`native_lane.Lane.stats`)."""

    @classmethod
    def capture(
        cls,
        stats: RequestStats,
        *,
        reloads: ReloadStats | None = None,
        pool_connections: dict[str, int] | None = None,
        endpoint_health: dict[tuple[str, str], int] | None = None,
        backend_endpoints: dict[tuple[str, str], tuple[int, int]] | None = None,
        active_connections: int = 0,
        tls_expiry: dict[tuple[str, str], float] | None = None,
        state_changes: dict[tuple[str, str, str], int] | None = None,
        mirrors: dict[tuple[str, str, str], int] | None = None,
        lane: dict[str, int] | None = None,
    ) -> MetricsSnapshot:
        """Copy the live counters (so the copy can leave the event loop)."""
        return cls(
            requests=dict(stats.requests),
            durations={route: list(hist) for route, hist in stats.durations.items()},
            backend_durations={b: list(hist) for b, hist in stats.backend_durations.items()},
            connect_failures=dict(stats.connect_failures),
            pool_connections=dict(pool_connections or {}),
            endpoint_health=dict(endpoint_health or {}),
            backend_endpoints=dict(backend_endpoints or {}),
            active_connections=active_connections,
            reloads=reloads if reloads is not None else ReloadStats(),
            tls_expiry=dict(tls_expiry or {}),
            state_changes=dict(state_changes or {}),
            mirrors=dict(mirrors or {}),
            lane=dict(lane or {}),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form for the worker → supervisor pipe."""
        return {
            "requests": [[*key, n] for key, n in self.requests.items()],
            "durations": self.durations,
            "backend_durations": self.backend_durations,
            "connect_failures": [[*key, n] for key, n in self.connect_failures.items()],
            "pool_connections": self.pool_connections,
            "endpoint_health": [[*key, v] for key, v in self.endpoint_health.items()],
            "backend_endpoints": [[*k, a, t] for k, (a, t) in self.backend_endpoints.items()],
            "active_connections": self.active_connections,
            "reloads": [self.reloads.success, self.reloads.failure, self.reloads.last_success_s],
            "tls_expiry": [[*key, v] for key, v in self.tls_expiry.items()],
            "state_changes": [[*key, n] for key, n in self.state_changes.items()],
            "mirrors": [[*key, n] for key, n in self.mirrors.items()],
            "lane": self.lane,
            **(
                {"backend_endpoints_text": self.backend_endpoints_text}
                if self.backend_endpoints_text is not None
                else {}
            ),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> MetricsSnapshot:
        success, failure, last = raw.get("reloads", [0, 0, 0.0])
        return cls(
            requests={(r, b, c, int(code)): n for r, b, c, code, n in raw.get("requests", [])},
            durations={k: list(v) for k, v in raw.get("durations", {}).items()},
            backend_durations={k: list(v) for k, v in raw.get("backend_durations", {}).items()},
            connect_failures={(c, e): n for c, e, n in raw.get("connect_failures", [])},
            pool_connections=dict(raw.get("pool_connections", {})),
            endpoint_health={(c, e): v for c, e, v in raw.get("endpoint_health", [])},
            backend_endpoints={(b, c): (a, t) for b, c, a, t in raw.get("backend_endpoints", [])},
            active_connections=int(raw.get("active_connections", 0)),
            reloads=ReloadStats(success, failure, last),
            tls_expiry={(lst, f): float(v) for lst, f, v in raw.get("tls_expiry", [])},
            state_changes={(k, b, x): n for k, b, x, n in raw.get("state_changes", [])},
            mirrors={(r, b, x): n for r, b, x, n in raw.get("mirrors", [])},
            lane={str(k): int(n) for k, n in raw.get("lane", {}).items()},
            backend_endpoints_text=raw.get("backend_endpoints_text"),
        )


def merge(snapshots: Iterable[MetricsSnapshot]) -> MetricsSnapshot:
    """Sum workers' snapshots; endpoint health is the minimum (down anywhere = down).

    Reload stats are taken from the first snapshot carrying any: every worker
    (and the supervisor) reloads the same file, so summing would multiply them.
    """
    out = MetricsSnapshot()
    texts: list[str | None] = []
    for snap in snapshots:
        texts.append(snap.backend_endpoints_text)
        for key, n in snap.requests.items():
            out.requests[key] = out.requests.get(key, 0) + n
        _add_histograms(out.durations, snap.durations)
        _add_histograms(out.backend_durations, snap.backend_durations)
        for ckey, n in snap.connect_failures.items():
            out.connect_failures[ckey] = out.connect_failures.get(ckey, 0) + n
        for state, n in snap.pool_connections.items():
            out.pool_connections[state] = out.pool_connections.get(state, 0) + n
        for ekey, v in snap.endpoint_health.items():
            out.endpoint_health[ekey] = min(v, out.endpoint_health.get(ekey, v))
        for bkey, (available, total) in snap.backend_endpoints.items():
            seen = out.backend_endpoints.get(bkey)
            if seen is not None:
                available = min(available, seen[0])
            out.backend_endpoints[bkey] = (available, total)
        out.active_connections += snap.active_connections
        for skey, n in snap.state_changes.items():
            out.state_changes[skey] = out.state_changes.get(skey, 0) + n
        for mkey, n in snap.mirrors.items():
            out.mirrors[mkey] = out.mirrors.get(mkey, 0) + n
        for event, n in snap.lane.items():
            out.lane[event] = out.lane.get(event, 0) + n
        for tkey, left in snap.tls_expiry.items():
            out.tls_expiry[tkey] = min(left, out.tls_expiry.get(tkey, left))
        if out.reloads == ReloadStats() and snap.reloads != ReloadStats():
            out.reloads = snap.reloads
    if len(texts) == 1:
        out.backend_endpoints_text = texts[0]
    return out


STATE_CHANGE_METRICS: dict[str, tuple[str, str, str]] = {
    # kind: (metric, help, second label); counted by `gateway.upstream.health_driver`
    "ejection": (
        "portway_outlier_ejections_total",
        "Endpoints ejected by outlier detection, by backend and reason.",
        "reason",
    ),
    "health": (
        "portway_endpoint_health_changes_total",
        "Active health check status changes, by backend and the status entered.",
        "to",
    ),
    "overflow": (
        "portway_upstream_overflow_total",
        "Requests refused by a circuit breaker (503 overflow), by backend and limit.",
        "limit",
    ),
}


def _add_histograms(into: dict[str, list[float]], more: dict[str, list[float]]) -> None:
    for name, hist in more.items():
        acc = into.get(name)
        if acc is None:
            into[name] = list(hist)
        else:
            for i, v in enumerate(hist):
                acc[i] += v


class SnapshotCollector(Collector):
    """A prometheus_client collector rendering one `MetricsSnapshot`."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self._snap = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snap
        requests = CounterMetricFamily(
            "portway_requests_total",
            "Requests finished, by route, backend, cluster and status code.",
            labels=["route", "backend", "cluster", "code"],
        )
        for (route, backend, cluster, code), n in sorted(snap.requests.items()):
            requests.add_metric([route, backend, cluster, str(code)], n)
        yield requests

        durations = HistogramMetricFamily(
            "portway_request_duration_seconds",
            "Request duration from request head to response end, by route.",
            labels=["route"],
        )
        for route, hist in sorted(snap.durations.items()):
            durations.add_metric([route], _cumulative(hist), hist[NBUCKETS])
        yield durations
        by_backend = HistogramMetricFamily(
            "portway_backend_request_duration_seconds",
            "Request duration from request head to response end, by backend.",
            labels=["backend"],
        )
        for backend, hist in sorted(snap.backend_durations.items()):
            by_backend.add_metric([backend], _cumulative(hist), hist[NBUCKETS])
        yield by_backend

        failures = CounterMetricFamily(
            "portway_upstream_connect_failures_total",
            "Failed connection attempts to upstream endpoints.",
            labels=["cluster", "endpoint"],
        )
        for (cluster, endpoint), n in sorted(snap.connect_failures.items()):
            failures.add_metric([cluster, endpoint], n)
        yield failures

        pool = GaugeMetricFamily(
            "portway_upstream_pool_connections",
            "Pooled upstream connections by state.",
            labels=["state"],
        )
        for state, n in sorted(snap.pool_connections.items()):
            pool.add_metric([state], n)
        yield pool

        reloads = CounterMetricFamily(
            "portway_config_reloads_total", "Config reloads by result.", labels=["result"]
        )
        reloads.add_metric(["success"], snap.reloads.success)
        reloads.add_metric(["failure"], snap.reloads.failure)
        yield reloads
        yield GaugeMetricFamily(
            "portway_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
            value=snap.reloads.last_success_s,
        )

        health = GaugeMetricFamily(
            "portway_endpoint_health",
            "1 when the endpoint may take traffic, 0 when unhealthy, ejected or drained.",
            labels=["cluster", "endpoint"],
        )
        for (cluster, endpoint), v in sorted(snap.endpoint_health.items()):
            health.add_metric([cluster, endpoint], v)
        yield health
        yield GaugeMetricFamily(
            "portway_active_connections",
            "Client connections currently open.",
            value=snap.active_connections,
        )
        expiry = GaugeMetricFamily(
            "portway_tls_certificate_expiry_seconds",
            "Seconds until a served certificate expires (negative: expired).",
            labels=["listener", "cert_file"],
        )
        for (listener, cert_file), left in sorted(snap.tls_expiry.items()):
            expiry.add_metric([listener, cert_file], left)
        yield expiry
        for kind, (name, doc, label) in STATE_CHANGE_METRICS.items():
            family = CounterMetricFamily(name, doc, labels=["backend", label])
            for (k, backend, value), n in sorted(snap.state_changes.items()):
                if k == kind:
                    family.add_metric([backend, value], n)
            yield family
        mirrors = CounterMetricFamily(
            "portway_mirror_requests_total",
            "Copies asked of request mirrors, by rule, mirror backend and result "
            "(sent: answered; failed: no connection, timeout or cut; dropped: too many "
            "in flight; skipped: not copyable).",
            labels=["rule", "backend", "result"],
        )
        for (rule, backend, result), n in sorted(snap.mirrors.items()):
            mirrors.add_metric([rule, backend, result], n)
        yield mirrors
        lane = CounterMetricFamily(
            "portway_native_lane_events_total",
            "Native socket lane events: accepted (connections), fast_requests (heads parsed "
            "in C), slow_connections (moved to the Python parser), upstream_connects and "
            "upstream_reused (native upstream sockets opened, idle ones reused).",
            labels=["event"],
        )
        for event, n in sorted(snap.lane.items()):
            lane.add_metric([event], n)
        yield lane
        build = GaugeMetricFamily(
            "portway_build_info",
            "1, labelled with how the HTTP hot path runs: compiled (mypyc) or interpreted.",
            labels=["hot_path"],
        )
        build.add_metric([compiled.state.partition(":")[0]], 1)
        yield build


def _cumulative(hist: list[float]) -> list[tuple[str, float]]:
    cumulative = 0.0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip((*DURATION_BUCKETS_S, float("inf")), hist, strict=False):
        cumulative += count
        buckets.append((_bound_label(bound), cumulative))
    return buckets


def _bound_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def render(snapshot: MetricsSnapshot) -> bytes:
    """The Prometheus text exposition of `snapshot`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    text = snapshot.backend_endpoints_text
    availability = (
        text.encode() if text is not None else backend_exposition(snapshot.backend_endpoints)
    )
    return generate_latest(registry) + availability
