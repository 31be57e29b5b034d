"""Publishing derived records: diff against what is published, write only changes.

Theory of operation. `plan(desired, published)` is pure: the records to put
(new or different, ignoring `publishedAt`, which changes on every
derivation) and the keys to withdraw (published before, not desired now:
the Service was deleted, un-exported, or lost its last valid port).
`Publisher` carries a plan out on a `Registry` (portway/registry/base.py),
whose backend keeps each written record's lease alive in the background.

Nothing is withdrawn on shutdown or when leadership is lost: `abandon`
stops the renewals and the TTL decides. The registry is opened with the
cluster's publisher identity (`controller_owner`), so the next writer of
the same cluster (the restarted process, the replica that takes the Lease
over) adopts each record in place the moment it publishes: the registry
moves the key under the new lease without deleting it, and no gateway sees
the cluster drop out. Each activation writes every desired record once,
since records held in an earlier term may have been adopted meanwhile by
another replica and left to their TTL.

A record held by a writer of *another* identity (a controller of another
Kubernetes cluster started with this cluster's name, a record put by hand)
answers `OwnershipError`. Such a key is *blocked*: the other writer's record
stays, and the publisher watches the registry and writes the key the moment
that writer's lease expires (a DELETE for the key). A write that fails
because the registry is unreachable is retried every `retry_s`; so is a
record whose lease the backend reports lost (it expired during a partition).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import operator
from collections.abc import Mapping
from dataclasses import dataclass

from controller.metrics import ControllerMetrics
from portway.model import DEFAULT_TTL_S, ServiceKey, ServiceRecord
from portway.registry.base import (
    ChangeKind,
    Lease,
    OwnershipError,
    Registry,
    RegistryError,
    RegistryUnavailable,
    Snapshot,
)

log = logging.getLogger(__name__)


def controller_owner(cluster: str) -> str:
    """The publisher identity of a cluster's controller, shared by all its replicas and
    restarts (what `portway controller --owner` defaults to)."""
    return f"portway-controller/{cluster}"


_ALL_BUT_NODES = operator.attrgetter(
    *(f.name for f in dataclasses.fields(ServiceRecord) if f.name not in ("nodes", "published_at"))
)


def same_content(
    a: ServiceRecord, b: ServiceRecord, nodes_seen: dict[tuple[int, int], bool] | None = None
) -> bool:
    """Equal apart from `publishedAt` (a re-derivation of an unchanged Service).

    The node lists are compared last and, given `nodes_seen`, once per pair of
    tuples: the records of a cluster's policy-Cluster Services share one node
    tuple per derivation, so a diff of thousands of records compares a few
    node lists, not one per record.
    """
    if a is b:
        return True
    if _ALL_BUT_NODES(a) != _ALL_BUT_NODES(b):
        return False
    if a.nodes is b.nodes or nodes_seen is None:
        return a.nodes == b.nodes
    pair = (id(a.nodes), id(b.nodes))
    same = nodes_seen.get(pair)
    if same is None:
        same = nodes_seen[pair] = a.nodes == b.nodes
    return same


@dataclass(frozen=True, slots=True)
class PublishPlan:
    """What to write and what to withdraw to go from published to desired."""

    puts: tuple[ServiceRecord, ...] = ()
    withdrawals: tuple[ServiceKey, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.puts or self.withdrawals)


def plan(
    desired: Mapping[ServiceKey, ServiceRecord], published: Mapping[ServiceKey, ServiceRecord]
) -> PublishPlan:
    """The changes, in key order so the writes are deterministic."""
    nodes_seen: dict[tuple[int, int], bool] = {}
    puts = tuple(
        desired[k]
        for k in sorted(desired, key=ServiceKey.path)
        if k not in published or not same_content(desired[k], published[k], nodes_seen)
    )
    gone = tuple(sorted((k for k in published if k not in desired), key=ServiceKey.path))
    return PublishPlan(puts, gone)


class Publisher:
    """Keeps one cluster's records in the registry equal to the desired ones."""

    def __init__(
        self,
        registry: Registry,
        metrics: ControllerMetrics,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        retry_s: float = 1.0,
        concurrency: int = 16,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.ttl_s = ttl_s
        self.retry_s = retry_s
        self.published: dict[ServiceKey, ServiceRecord] = {}
        self.blocked: dict[ServiceKey, ServiceRecord] = {}
        self.desired: dict[ServiceKey, ServiceRecord] = {}
        self.active = False
        self._leases: dict[ServiceKey, Lease] = {}
        self._lock = asyncio.Lock()
        self._gate = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()

    async def set_desired(self, desired: Mapping[ServiceKey, ServiceRecord]) -> None:
        """Record what should be published; writes it if this replica is active."""
        self.desired = dict(desired)
        if self.active:
            await self.sync()

    async def activate(self) -> None:
        """Start writing (this replica leads): every desired record is written, adopting
        what an earlier session of this cluster holds; what an earlier term of this replica
        wrote and is no longer desired is withdrawn."""
        async with self._lock:
            self.published = {k: r for k, r in self.published.items() if k not in self.desired}
            self.active = True
        await self.sync()

    async def deactivate(self, *, abandon: bool) -> None:
        """Stop writing; with `abandon`, stop renewing too (records expire after their TTL)."""
        self.active = False
        if not abandon:
            return
        async with self._lock:
            for key in list(self._leases):
                await self.registry.abandon(key)
            if self._leases:
                log.info("records abandoned to their TTL", extra={"count": len(self._leases)})
            self._leases.clear()
            self.published.clear()
            self.blocked.clear()
            self._gauges()

    async def sync(self) -> None:
        """Carry out the plan from what this replica holds to what is desired."""
        async with self._lock:
            if not self.active:
                return
            for key, lease in list(self._leases.items()):
                if lease.lost:
                    self._leases.pop(key, None)
                    self.published.pop(key, None)
            todo = plan(self.desired, self.published)
            await asyncio.gather(*(self._put(r) for r in todo.puts))
            await asyncio.gather(*(self._withdraw(k) for k in todo.withdrawals))
            for key in list(self.blocked):
                if key not in self.desired:
                    del self.blocked[key]
            self._gauges()

    async def _put(self, record: ServiceRecord) -> None:
        async with self._gate:
            try:
                lease = await self.registry.publish(record, self.ttl_s)
            except OwnershipError as exc:
                if record.key not in self.blocked:
                    log.warning(
                        "record held by a writer of another identity; publishing when its "
                        "lease expires",
                        extra={"key": record.key.path(), "owner": exc.owner},
                    )
                self.blocked[record.key] = record
                self.metrics.publishes.labels(result="owned").inc()
                return
            except RegistryUnavailable as exc:
                self.metrics.publishes.labels(result="unavailable").inc()
                log.warning(
                    "registry unavailable; will retry",
                    extra={"key": record.key.path(), "error": str(exc)},
                )
                return
            except RegistryError as exc:
                self.metrics.publishes.labels(result="error").inc()
                log.error(
                    "registry refused the record",
                    extra={"key": record.key.path(), "error": str(exc)},
                )
                return
        self._leases[record.key] = lease
        self.published[record.key] = record
        self.blocked.pop(record.key, None)
        self.metrics.publishes.labels(result="ok").inc()

    async def _withdraw(self, key: ServiceKey) -> None:
        async with self._gate:
            try:
                await self.registry.withdraw(key)
            except RegistryError as exc:
                log.warning(
                    "withdraw failed; will retry", extra={"key": key.path(), "error": str(exc)}
                )
                return
        self._leases.pop(key, None)
        self.published.pop(key, None)
        self.metrics.withdrawals.inc()
        log.info("record withdrawn", extra={"key": key.path()})

    def _gauges(self) -> None:
        self.metrics.records.set(len(self.published))
        self.metrics.blocked.set(len(self.blocked))

    def pending(self) -> bool:
        """Whether a retry could change something (blocked, failed or lost writes)."""
        if not self.active:
            return False
        return (
            bool(self.blocked)
            or bool(plan(self.desired, self.published))
            or any(lease.lost for lease in self._leases.values())
        )

    async def run(self) -> None:
        """Retry what is pending every `retry_s`, and at once when a blocked key is freed."""
        watcher = asyncio.create_task(self._watch_frees(), name="publisher-registry-watch")
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.retry_s)
                self._wake.clear()
                if self.pending():
                    await self.sync()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch_frees(self) -> None:
        """Wake `run` when a key this publisher waits for disappears from the registry.

        The registry is watched only while some key is blocked; a watch of the
        whole prefix is not free on a large registry.
        """
        while True:
            if not self.blocked:
                await asyncio.sleep(self.retry_s)
                continue
            try:
                snap = await self.registry.snapshot()
                if any(k not in snap.records for k in self.blocked):
                    self._wake.set()
                async for item in self.registry.watch(snap.revision):
                    if isinstance(item, Snapshot):
                        freed = any(k not in item.records for k in self.blocked)
                    else:
                        freed = item.kind is ChangeKind.DELETE and item.key in self.blocked
                    if freed:
                        self._wake.set()
                    if not self.blocked:
                        break
            except RegistryError as exc:
                log.debug("registry watch interrupted", extra={"error": str(exc)})
                await asyncio.sleep(self.retry_s)
