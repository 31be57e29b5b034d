"""What one worker reports: its counters, its endpoint state, its certificates.

A report is the JSON object the admin API reads (`ops.source.AdminSource.
reports`) and a supervisor asks each worker for over the control channel
(`gateway.runtime.control`), summing them (`gateway.ops.metrics.merge`):
`{"pid", "config_version", "metrics", "endpoints": {...}, "tls": [...]}`.
Workers keep plain counters, so nothing on the request path knows about
processes.

Endpoint availability per (backend, cluster) walks the whole table (10,000
backends at fleet size), so it is counted in a thread, from the immutable
table and a copy of the few unavailable keys, while the event loop keeps
serving; counts are kept until the table or the endpoint state changes
(`ctx.state.generation`), and backends shared with the table counted last
time are not recounted (`ops.backend_health.BackendCounter`). Counts are made
one at a time: a scrape and the dashboard may ask at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from gateway.http.filters.mirror import MIRRORS
from gateway.ops.backend_health import BackendCounter, unavailable_keys
from gateway.ops.metrics import MetricsSnapshot

if TYPE_CHECKING:
    from gateway.context import GatewayContext
    from gateway.ops.observer import GatewayObserver
    from gateway.routing.table import RoutingTable
    from gateway.runtime.tls import ServerTls
    from gateway.upstream.health_driver import HealthDriver
    from gateway.upstream.pool import PoolSet

log = logging.getLogger("portway.gateway.runtime.worker_report")

T = TypeVar("T")


def pool_connections(pools: PoolSet | None) -> dict[str, int]:
    """Upstream pool connections by state (idle / active) from `ctx.pools`."""
    idle = active = 0
    for pool in pools.pools.values() if pools is not None else ():
        n_idle = pools.idle_count(pool)
        idle += n_idle
        active += max(0, pool.total - n_idle)
    return {"idle": idle, "active": active}


class _TableMemo(Generic[T]):
    """One value made from a table and its endpoint state, kept until either changes."""

    __slots__ = ("generation", "table", "value")

    def __init__(self) -> None:
        self.table: RoutingTable | None = None
        self.generation = -1
        self.value: T | None = None


class ReportedWorker(Protocol):
    """What a report reads of its worker (`gateway.runtime.server.Worker`); `ctx` and
    `health` are None until the worker started."""

    ctx: GatewayContext | None
    health: HealthDriver | None
    observer: GatewayObserver
    server_tls: dict[str, ServerTls]


class WorkerReports:
    """Makes one worker's reports; see the module docstring."""

    def __init__(self, worker: ReportedWorker) -> None:
        self._worker = worker
        self._counter = BackendCounter()
        self._counts_memo: _TableMemo[list[list[Any]]] = _TableMemo()
        self._text_memo: _TableMemo[str] = _TableMemo()
        self._counting = asyncio.Lock()
        self._warming: asyncio.Task[None] | None = None

    def report(
        self,
        *,
        backend_endpoints_json: list[list[Any]] | None = None,
        per_endpoint: bool = False,
    ) -> dict[str, Any]:
        """The worker's counters and endpoint state; see `full` for the availability part.

        `backend_endpoints_json` is the counts already in their JSON form (made
        in a thread by `full`: 20,000 pairs at 10,000 services), taken as they
        are instead of being converted here, on the event loop.

        `per_endpoint` adds one health value per endpoint (`/metrics?endpoints=1`):
        a walk of the whole table, so it is only done when asked.
        """
        now = time.time()
        worker = self._worker
        ctx = worker.ctx
        state = ctx.state if ctx is not None else None
        snap = MetricsSnapshot.capture(
            worker.observer.stats,
            pool_connections=pool_connections(ctx.pools if ctx else None),
            endpoint_health=self._endpoint_health() if per_endpoint else None,
            active_connections=len(ctx.connections) if ctx is not None else 0,
            tls_expiry=self._tls_expiry(now),
            state_changes=self._state_changes(),
            mirrors=MIRRORS.totals(),
            lane=ctx.pools.lane.stats()
            if ctx is not None and ctx.pools and ctx.pools.lane
            else None,
        )
        metrics = snap.to_json()
        if backend_endpoints_json is not None:
            metrics["backend_endpoints"] = backend_endpoints_json
        return {
            "pid": os.getpid(),
            "config_version": ctx.config_version if ctx else "",
            "metrics": metrics,
            "endpoints": {
                "unhealthy": sorted(state.unhealthy) if state else [],
                "ejected": sorted(state.ejected) if state else [],
                "draining": sorted(state.draining) if state else [],
                "in_flight": dict(state.in_flight) if state else {},
                "reasons": dict(worker.health.reasons) if worker.health is not None else {},
            },
            "tls": [
                status.as_json(now) for tls in worker.server_tls.values() for status in tls.status
            ],
        }

    async def full(
        self, *, per_endpoint: bool = False, availability: bool = True, rendered: bool = False
    ) -> dict[str, Any]:
        """`report` with availability per (backend, cluster), counted in a thread.

        `availability=False` leaves it out (the admin's /endpoints and /explain
        read only the endpoint state). `rendered` answers it as exposition
        text instead of rows (`metrics.backend_endpoints_text`): what a lone
        process's own `/metrics` asks, 20,000 pairs with no object per pair.
        """
        ctx = self._worker.ctx
        counts: list[list[Any]] | None = None
        text: str | None = None
        if availability and ctx is not None and ctx.table is not None:
            async with self._counting:
                if rendered:
                    text = await self._memoised(
                        self._text_memo, ctx.table, ctx, self._counter.exposition
                    )
                else:
                    counts = await self._memoised(
                        self._counts_memo, ctx.table, ctx, self._count_json
                    )
        report = self.report(backend_endpoints_json=counts, per_endpoint=per_endpoint)
        if text is not None:
            report["metrics"]["backend_endpoints_text"] = text
        return report

    def warm(self) -> None:
        """Count a table built whole before a scrape asks (a first count of 10,000
        backends indexes each: ~0.1 s, in a thread, now rather than in a scrape)."""
        if self._warming is None:
            self._warming = asyncio.create_task(self._warm(), name="warm-counts")

    async def _warm(self) -> None:
        try:
            await self.full(rendered=True)
        except Exception:
            log.exception("counting endpoint availability failed")
        finally:
            self._warming = None

    @staticmethod
    async def _memoised(
        memo: _TableMemo[T],
        table: RoutingTable,
        ctx: GatewayContext,
        count: Callable[[Any, frozenset[str]], T],
    ) -> T:
        """`memo`'s value if made from `table` at this endpoint state, else `count`
        of the table's backends and the unavailable keys, made in a thread and kept."""
        generation = ctx.state.generation
        # identity: a table's == compares its whole description
        if memo.value is None or memo.table is not table or memo.generation != generation:
            unavailable = unavailable_keys(ctx.state)
            memo.value = await asyncio.to_thread(count, table.backends, unavailable)
            memo.table, memo.generation = table, generation
        return memo.value

    def _count_json(self, backends: Any, unavailable: frozenset[str]) -> list[list[Any]]:
        """Availability per (backend, cluster) in its JSON form (runs in a thread)."""
        counts = self._counter.count(backends, unavailable)
        return [[b, c, available, total] for (b, c), (available, total) in counts.items()]

    def _state_changes(self) -> dict[tuple[str, str, str], int]:
        """Ejections, health changes and overflows for `/metrics` (`STATE_CHANGE_METRICS`)."""
        out: dict[tuple[str, str, str], int] = {}
        health, ctx = self._worker.health, self._worker.ctx
        if health is not None:
            stats = health.stats
            for (backend, reason), n in stats.ejections.items():
                out[("ejection", backend, reason)] = n
            for (backend, to), n in stats.health_changes.items():
                out[("health", backend, to)] = n
        if ctx is not None:
            for (backend, limit), n in ctx.breakers.overflows.items():
                out[("overflow", backend, limit)] = n
        return out

    def _tls_expiry(self, now: float) -> dict[tuple[str, str], float]:
        if self._worker.ctx is None:
            return {}
        return {
            (status.listener, status.cert_file): status.expires_in_s(now)
            for tls in self._worker.server_tls.values()
            for status in tls.status
        }

    def _endpoint_health(self) -> dict[tuple[str, str], int]:
        ctx = self._worker.ctx
        if ctx is None:
            return {}
        out: dict[tuple[str, str], int] = {}
        for backend in ctx.table.backends.values() if ctx.table is not None else ():
            for ep in backend.endpoints:
                out[(ep.cluster, ep.key)] = int(ctx.state.available(ep.key))
        return out
