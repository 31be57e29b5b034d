"""The dashboard's live feed: one sampler per admin process, shared by every open page.

Theory of operation: while at least one dashboard is connected, the sampler
asks the `AdminSource` for the workers' reports once a tick (the path
`/metrics` uses: a single process reports itself, a supervisor asks every
worker over its control channel), computes one snapshot off the event loop
(`traffic` for rates and percentiles, aggregated per backend and cluster and
per route; `events` for rotation changes), encodes it once as a server-sent
event and hands the same bytes to every subscriber. With nobody watching it
stops: a gateway nobody looks at pays nothing.

Bounded cost: nothing here walks endpoints, only the counters' label sets
(routes × backends × clusters × codes) and the per-(backend, cluster)
availability the reports carry; the snapshot lists the `TOP_BACKENDS`
busiest backends and `TOP_ROUTES` busiest routes and at most `MAX_LISTED`
endpoints out of rotation, whatever the fleet size. A tick whose sampling
took long stretches the next pause so sampling stays under
`SAMPLING_BUDGET` of the wall clock (`sampling_pause_s`); each snapshot
carries the interval it measured, so rates stay right.

A subscriber that does not keep up loses its oldest pending snapshot, never
the sampler's time. Config reload events are recorded whether or not anyone
watches (`watch_reloads`, a few attribute reads a tick).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gateway.ops.dashboard.events import (
    EventRing,
    ReloadView,
    out_of_rotation,
    reload_happenings,
    rotation_happenings,
)
from gateway.ops.dashboard.traffic import TrafficCounters, TrafficRates, traffic_rates

if TYPE_CHECKING:
    from gateway.ops.source import AdminSource, ReloadSource

log = logging.getLogger("portway.gateway.ops.dashboard")

TICK_S: Final = 1.0
SAMPLING_BUDGET: Final = 0.05
TOP_BACKENDS: Final = 20
TOP_ROUTES: Final = 20
MAX_LISTED: Final = 50
MAX_SUBSCRIBERS: Final = 32
QUEUE_DEPTH: Final = 4


def sampling_pause_s(
    cost_s: float, tick_s: float = TICK_S, budget: float = SAMPLING_BUDGET
) -> float:
    """The pause before the next sample: a tick, stretched so sampling stays within `budget`."""
    return max(tick_s - cost_s, cost_s * (1.0 - budget) / budget)


def reload_view(reloader: ReloadSource) -> ReloadView:
    active, failure = reloader.active, reloader.last_failure
    return ReloadView(
        version=active.version if active else None,
        table_version=active.table_version if active else 0,
        successes=reloader.stats.success,
        failures=reloader.stats.failure,
        loaded_at=active.loaded_at if active else 0.0,
        last_compile_ms=reloader.last_compile_s * 1000,
        rejected_at=failure.at if failure else None,
        rejected_issues=failure.issues if failure else (),
    )


@dataclass(frozen=True, slots=True)
class Reading:
    """What one tick read from the reports, computed off the loop."""

    counters: TrafficCounters
    availability: Mapping[tuple[str, str], tuple[int, int]]
    active_connections: int
    rotation: Mapping[str, str]
    workers: int


def read_reports(reports: Sequence[Mapping[str, Any]]) -> Reading:
    """Add up the workers' reports into one reading (pure; runs in a thread).

    Availability per (backend, cluster) is the lowest any worker reports (an
    endpoint out of rotation in one worker gets none of its traffic), as
    `metrics.merge` does for `/metrics`.
    """
    availability: dict[tuple[str, str], tuple[int, int]] = {}
    connections = 0
    for report in reports:
        metrics = report.get("metrics", {})
        connections += int(metrics.get("active_connections", 0))
        for backend, cluster, up, total in metrics.get("backend_endpoints", ()):
            seen = availability.get((backend, cluster))
            availability[(backend, cluster)] = (up if seen is None else min(up, seen[0]), total)
    return Reading(
        counters=TrafficCounters.fold(r.get("metrics", {}) for r in reports),
        availability=availability,
        active_connections=connections,
        rotation=out_of_rotation(reports),
        workers=len(reports),
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def snapshot_json(
    rates: TrafficRates, reading: Reading, *, baseline: bool, max_listed: int = MAX_LISTED
) -> dict[str, Any]:
    """The JSON the page renders (pure); `baseline` marks a first reading with no rates yet."""
    availability = reading.availability
    rotation = sorted(reading.rotation.items())
    return {
        "baseline": baseline,
        "interval_s": round(rates.interval_s, 3),
        "workers": reading.workers,
        "totals": {
            "requests": rates.requests,
            "rps": round(rates.rps, 3),
            "errors_per_s": round(rates.errors_per_s, 3),
            "error_rate": round(rates.error_rate, 5),
            "p50_ms": _ms(rates.p50_s),
            "p99_ms": _ms(rates.p99_s),
            "active_connections": reading.active_connections,
        },
        "backends": [
            {
                "backend": b.backend,
                "cluster": b.cluster,
                "rps": round(b.rps, 3),
                "errors_per_s": round(b.errors_per_s, 3),
                "share": round(b.share, 4),
                "requests": b.requests,
                "available": availability.get((b.backend, b.cluster), (None, None))[0],
                "endpoints": availability.get((b.backend, b.cluster), (None, None))[1],
            }
            for b in rates.backends
        ],
        "routes": [
            {
                "route": r.route,
                "rps": round(r.rps, 3),
                "error_rate": round(r.error_rate, 5),
                "p50_ms": _ms(r.p50_s),
                "p99_ms": _ms(r.p99_s),
                "requests": r.requests,
            }
            for r in rates.routes
        ],
        "out_of_rotation": {
            "count": len(rotation),
            "endpoints": [{"key": k, "reason": why} for k, why in rotation[:max_listed]],
        },
    }


def snapshot_between(
    previous: Reading | None, current: Reading, interval_s: float
) -> dict[str, Any]:
    """The snapshot of the interval between two readings (the first reading: a baseline)."""
    rates = traffic_rates(
        previous.counters if previous else current.counters,
        current.counters,
        interval_s,
        top_backends=TOP_BACKENDS,
        top_routes=TOP_ROUTES,
        always=current.availability.keys(),
    )
    return snapshot_json(rates, current, baseline=previous is None)


def sse(event: str, data: Mapping[str, Any], *, event_id: int | None = None) -> bytes:
    """One server-sent event (the data is one line of JSON)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Subscription:
    """One open page's queue of encoded events; the oldest is dropped when it is full."""

    def __init__(self, depth: int = QUEUE_DEPTH) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(depth)

    def offer(self, data: bytes | None) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(data)


class DashboardFeed:
    """Samples the gateway for open dashboards (see the module docstring)."""

    def __init__(
        self,
        source: AdminSource,
        *,
        tick_s: float = TICK_S,
        max_subscribers: int = MAX_SUBSCRIBERS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.tick_s = tick_s
        self.max_subscribers = max_subscribers
        self.events = EventRing()
        self.latest: bytes | None = None
        """The last snapshot sent, handed at once to a page that connects."""
        self._clock = clock
        self._monotonic = monotonic
        self._subscribers: set[Subscription] = set()
        self._sampler: asyncio.Task[None] | None = None
        self._reloads: ReloadView | None = None
        self._seq = 0

    # ---- subscribers -------------------------------------------------------

    def subscribe(self) -> Subscription | None:
        """A queue of snapshots, or None when `max_subscribers` pages are already open."""
        if len(self._subscribers) >= self.max_subscribers:
            return None
        sub = Subscription()
        self._subscribers.add(sub)
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.get_running_loop().create_task(
                self._sample(), name="dashboard-sampler"
            )
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def close(self, *_: Any) -> None:
        """End every open stream (admin shutdown) and the sampler."""
        for sub in list(self._subscribers):
            sub.offer(None)
        self._subscribers.clear()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None

    # ---- reload events (always on) -------------------------------------------

    def observe_reloads(self) -> None:
        """Record what changed in the reloader since the last look (a few attribute reads)."""
        view = reload_view(self.source.reloader)
        self.events.extend(reload_happenings(self._reloads, view, self._clock()))
        self._reloads = view

    async def watch_reloads(self) -> None:
        """Observe the reloader every tick until cancelled."""
        while True:
            self.observe_reloads()
            await asyncio.sleep(self.tick_s)

    # ---- the sampler -------------------------------------------------------

    async def _sample(self) -> None:
        previous: tuple[Reading, float] | None = None
        sent_seq = self.events.last_seq
        while self._subscribers:
            started = self._monotonic()
            try:
                reports = await self.source.reports()
                reading = await asyncio.to_thread(read_reports, reports)
            except Exception:  # a bad tick must not end the feed; say so once per tick
                log.exception("dashboard sample failed")
                await asyncio.sleep(self.tick_s)
                continue
            now = self._monotonic()
            self.observe_reloads()
            if previous is not None:
                self.events.extend(
                    rotation_happenings(previous[0].rotation, reading.rotation, self._clock())
                )
            body = await asyncio.to_thread(
                snapshot_between,
                previous[0] if previous else None,
                reading,
                now - previous[1] if previous else 0.0,
            )
            new_events = self.events.since(sent_seq)
            sent_seq = self.events.last_seq
            body.update(self._header(), events=[e.to_json() for e in new_events])
            self._seq += 1
            data = sse("snapshot", body, event_id=self._seq)
            self.latest = data
            for sub in list(self._subscribers):
                sub.offer(data)
            previous = (reading, now)
            cost = self._monotonic() - started
            await asyncio.sleep(sampling_pause_s(cost, self.tick_s))

    def _header(self) -> dict[str, Any]:
        reloader = self.source.reloader
        active = reloader.active
        return {
            "seq": self._seq + 1,
            "at": round(self._clock(), 3),
            "config": {
                "version": active.version if active else None,
                "table_version": active.table_version if active else None,
                "reloads": {"success": reloader.stats.success, "failure": reloader.stats.failure},
                "last_reload_error": reloader.last_failure is not None,
            },
        }
