"""The gateway's live endpoint feed: registry watch in, per-key changes out.

Theory of operation: `EndpointFeed` lists the registry once, then follows
`watch(revision)` and folds each change into its state. It hands the routing
side what changed since its last call, never the whole state, through
`on_changes(changes, status)`: `changes` maps each key that changed to its
new validated record, or to None when it is gone (the first call carries
every record). The consumer recompiles per call, so bursts are debounced:
the first change arms a `debounce_s` timer and everything that arrives
meanwhile rides on the same callback (a key changed twice is handed over
once, with its last value). A record that is deleted or expired means
"cluster gone" and is handed over at once, timer or not, so failover never
waits on the debounce. A whole `Snapshot` from the backend (a resync) is
diffed against the state off the event loop, and only the difference is
handed over.

"Registry unreachable" is different from "record gone": the feed keeps the
last known records (the routing table in force stays as it is, and no
record expires on the gateway's side: expiry is the registry's to decide, as
Envoy keeps the last EDS when it loses its control plane), reports
`up=False` and `stale_since`, logs once per change of state, and reconnects
with tenacity's exponential backoff with jitter, started afresh each time a
connection that worked breaks. A reconnect lists the registry again before
watching (a `Snapshot`, diffed, so only what changed during the outage is
handed over): a backend that has nothing new to say still proves it answers,
and the feed is up again at once rather than at the next change. Records the
backend cannot decode are skipped by the backend and counted here.

Metrics (prometheus_client, on the `CollectorRegistry` passed in, or the
default one): `portway_registry_up{backend}`, `portway_registry_records
{backend}`, `portway_registry_reconnects_total{backend}`,
`portway_registry_bad_records_total{backend}`,
`portway_registry_last_sync_timestamp_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import types
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from portway.model import ServiceKey, ServiceRecord
from portway.registry.base import (
    DIFF_INLINE_RECORDS,
    Change,
    ChangeKind,
    Registry,
    RegistryUnavailable,
    Snapshot,
    records_diff,
)
from portway.registry.decode import on_bad_record

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """How fresh the snapshot handed over is.

    `up` is False while the registry cannot be reached; `stale_since` is the
    wall-clock time that started (None while up). `last_sync` is the
    wall-clock time of the last item received from the registry.
    """

    backend: str
    up: bool
    revision: int
    records: int
    stale_since: float | None = None
    last_sync: float | None = None


RecordChanges = Mapping[ServiceKey, ServiceRecord | None]
"""Key → its new record, or None when deleted or expired."""
OnChanges = Callable[[RecordChanges, FeedStatus], None]


class FeedMetrics:
    """The feed's Prometheus metrics, created once per CollectorRegistry."""

    _by_registry: weakref.WeakKeyDictionary[CollectorRegistry, FeedMetrics] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "portway_registry_up", "1 while the registry answers", ["backend"], registry=registry
        )
        self.records = Gauge(
            "portway_registry_records", "Records in the feed", ["backend"], registry=registry
        )
        self.reconnects = Counter(
            "portway_registry_reconnects_total",
            "Registry reconnect attempts",
            ["backend"],
            registry=registry,
        )
        self.bad_records = Counter(
            "portway_registry_bad_records_total",
            "Records skipped because they failed validation",
            ["backend"],
            registry=registry,
        )
        self.last_sync = Gauge(
            "portway_registry_last_sync_timestamp_seconds",
            "Wall-clock time of the last registry sync",
            registry=registry,
        )

    @classmethod
    def on(cls, registry: CollectorRegistry) -> FeedMetrics:
        found = cls._by_registry.get(registry)
        if found is None:
            found = cls._by_registry[registry] = cls(registry)
        return found


class EndpointFeed:
    """Follows one `Registry` and calls `on_changes` with what changed (see module docstring)."""

    def __init__(
        self,
        registry: Registry,
        on_changes: OnChanges,
        *,
        debounce_s: float = 0.05,
        clock: Callable[[], float] = time.time,
        metrics_registry: CollectorRegistry | None = None,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
    ) -> None:
        self.registry = registry
        self.backend = registry.backend
        self._on_changes = on_changes
        self._debounce_s = debounce_s
        self._clock = clock
        self._metrics = FeedMetrics.on(metrics_registry or REGISTRY)
        self._wait = wait_exponential_jitter(
            initial=backoff_initial_s, max=backoff_max_s, jitter=backoff_initial_s
        )
        self._state: dict[ServiceKey, ServiceRecord] = {}
        self._pending: dict[ServiceKey, ServiceRecord | None] = {}
        self._revision: int | None = None
        self._up = False
        self._stale_since: float | None = None
        self._last_sync: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.synced = asyncio.Event()
        self.callbacks = 0

    @property
    def records(self) -> Mapping[ServiceKey, ServiceRecord]:
        return types.MappingProxyType(self._state)

    @property
    def status(self) -> FeedStatus:
        return FeedStatus(
            backend=self.backend,
            up=self._up,
            revision=self._revision or 0,
            records=len(self._state),
            stale_since=self._stale_since,
            last_sync=self._last_sync,
        )

    def start(self) -> None:
        """Begin following the registry in a background task."""
        if self._task is None:
            self._unsubscribe = on_bad_record(self._count_bad)
            self._task = asyncio.create_task(self.run(), name=f"endpoint-feed-{self.backend}")

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _count_bad(self, backend: str, key: str) -> None:
        if backend == self.backend:
            self._metrics.bad_records.labels(self.backend).inc()

    async def run(self) -> None:
        """Follow the registry until cancelled, reconnecting with backoff."""
        while True:
            retrying = AsyncRetrying(
                wait=self._wait,
                retry=retry_if_exception_type(RegistryUnavailable),
                before_sleep=self._before_retry,
            )
            async for attempt in retrying:
                with attempt:
                    await self._follow()

    def _before_retry(self, state: RetryCallState) -> None:
        self._metrics.reconnects.labels(self.backend).inc()
        sleep = state.next_action.sleep if state.next_action else 0.0
        log.debug(  # counted in the metric; the outage itself is logged once, in _lost
            "reconnecting to the registry",
            extra={"backend": self.backend, "attempt": state.attempt_number, "sleep_s": sleep},
        )

    async def _follow(self) -> None:
        """One connection: list when starting or back from an outage, then apply the watch
        until it breaks. Returns (the caller starts a fresh backoff) when a connection
        that worked breaks; raises `RegistryUnavailable` when it never worked."""
        try:
            if self._revision is None or not self._up:
                snap = await self.registry.snapshot()
                self._connected()
                await self._apply_snapshot(snap)
                self._emit()
            assert self._revision is not None
            async for item in self.registry.watch(self._revision):
                self._connected()
                if isinstance(item, Snapshot):
                    await self._apply_snapshot(item)
                else:
                    self._apply(item)
        except RegistryUnavailable as exc:
            worked = self._up
            self._lost(exc)
            if not worked:
                raise

    def _connected(self) -> None:
        now = self._clock()
        self._last_sync = now
        self._metrics.last_sync.set(now)
        if not self._up:
            self._up = True
            self._metrics.up.labels(self.backend).set(1)
            if self._stale_since is not None:
                log.info(
                    "registry reachable again",
                    extra={
                        "backend": self.backend,
                        "stale_s": round(now - self._stale_since, 3),
                        "revision": self._revision,
                    },
                )
            self._stale_since = None

    def _lost(self, exc: Exception) -> None:
        self._metrics.up.labels(self.backend).set(0)
        if self._up or self._stale_since is None:
            self._up = False
            self._stale_since = self._clock()
            log.warning(
                "registry unreachable; serving the last known endpoints",
                extra={
                    "backend": self.backend,
                    "error": str(exc),
                    "records": len(self._state),
                    "revision": self._revision,
                },
            )
            if self._revision is not None:
                self._emit()

    async def _apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the state with `snap`, queueing only the keys that differ."""
        state = self._state
        if len(snap.records) > DIFF_INLINE_RECORDS or len(state) > DIFF_INLINE_RECORDS:
            diff = await asyncio.to_thread(records_diff, state, snap.records)
        else:
            diff = records_diff(state, snap.records)
        gone = False
        for key, record in diff.items():
            if record is None:
                gone = state.pop(key, None) is not None or gone
            else:
                state[key] = record
            self._pending[key] = record
        self._settle(snap.revision, gone, bool(diff))

    def _apply(self, item: Change) -> None:
        if item.kind is ChangeKind.DELETE or item.record is None:
            gone = self._state.pop(item.key, None) is not None
            changed = gone
            if gone:
                self._pending[item.key] = None
        else:
            gone = False
            changed = self._state.get(item.key) != item.record
            if changed:
                self._state[item.key] = item.record
                self._pending[item.key] = item.record
        self._settle(item.revision, gone, changed)

    def _settle(self, revision: int, gone: bool, changed: bool) -> None:
        self._revision = revision
        self._metrics.records.labels(self.backend).set(len(self._state))
        if gone:
            self._emit()
        elif changed and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._debounce_s, self._emit)

    def _emit(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.callbacks += 1
        self.synced.set()
        changes, self._pending = self._pending, {}
        try:
            self._on_changes(types.MappingProxyType(changes), self.status)
        except Exception:
            log.exception("endpoint changes callback failed", extra={"backend": self.backend})


def describe(status: FeedStatus) -> dict[str, Any]:
    """The status as a JSON-able dict for the admin API."""
    return {
        "backend": status.backend,
        "up": status.up,
        "revision": status.revision,
        "records": status.records,
        "staleSince": status.stale_since,
        "lastSync": status.last_sync,
    }
