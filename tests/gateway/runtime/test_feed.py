"""EndpointFeed: per-key changes, debounced bursts, immediate removals, stale on outage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import pytest
from prometheus_client import CollectorRegistry

from gateway.runtime.feed import EndpointFeed, FeedStatus
from portway.model import Node, ServiceKey, ServicePort, ServiceRecord
from portway.registry.memory import MemoryRegistry, MemoryStore

pytestmark = pytest.mark.timeout(30)


def rec(cluster: str, service: str = "web", node_port: int = 30080) -> ServiceRecord:
    return ServiceRecord(
        cluster=cluster,
        namespace="shop",
        service=service,
        ports=(ServicePort("http", 80, node_port),),
        nodes=(Node("n1", "10.0.0.1"),),
    )


class Calls:
    """Folds the feed's changes into the state a consumer would hold, call by call."""

    def __init__(self) -> None:
        self.state: dict[ServiceKey, ServiceRecord] = {}
        self.seen: list[tuple[dict[ServiceKey, ServiceRecord], FeedStatus, float]] = []
        self.changes: list[dict[ServiceKey, ServiceRecord | None]] = []

    def __call__(
        self, changes: Mapping[ServiceKey, ServiceRecord | None], status: FeedStatus
    ) -> None:
        for key, record in changes.items():
            if record is None:
                self.state.pop(key, None)
            else:
                self.state[key] = record
        self.changes.append(dict(changes))
        self.seen.append((dict(self.state), status, time.monotonic()))

    async def until(self, check, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while not (self.seen and check(*self.seen[-1][:2])):
            assert time.monotonic() < deadline, f"last callback: {self.seen[-1:]}"
            await asyncio.sleep(0.01)


def value(metrics: CollectorRegistry, name: str, **labels: str) -> float | None:
    return metrics.get_sample_value(name, labels)


async def start(store: MemoryStore, calls: Calls, **kw: float):  # type: ignore[no-untyped-def]
    metrics = CollectorRegistry()
    feed = EndpointFeed(MemoryRegistry(store), calls, metrics_registry=metrics, **kw)
    feed.start()
    await asyncio.wait_for(feed.synced.wait(), 5)
    return feed, metrics


async def test_first_sync_hands_over_the_whole_snapshot_at_once() -> None:
    store, calls = MemoryStore(), Calls()
    writer = MemoryRegistry(store)
    a, b = rec("a"), rec("b")
    await writer.publish(a)
    await writer.publish(b)
    feed, metrics = await start(store, calls, debounce_s=10.0)
    records, status, _ = calls.seen[0]
    assert records == {a.key: a, b.key: b}
    assert status.up and status.records == 2 and status.stale_since is None
    assert value(metrics, "portway_registry_up", backend="memory") == 1
    assert value(metrics, "portway_registry_records", backend="memory") == 2
    assert (value(metrics, "portway_registry_last_sync_timestamp_seconds") or 0) > 0
    await feed.stop()


async def test_a_burst_of_changes_makes_one_callback() -> None:
    store, calls = MemoryStore(), Calls()
    writer = MemoryRegistry(store)
    feed, _ = await start(store, calls, debounce_s=0.2)
    assert len(calls.seen) == 1
    burst = [rec(f"c{i}") for i in range(20)]
    for r in burst:
        await writer.publish(r)
    await calls.until(lambda records, status: len(records) == 20)
    await asyncio.sleep(0.3)
    assert len(calls.seen) == 2, "20 publishes inside the debounce window compile once"
    await feed.stop()


async def test_a_deleted_record_is_removed_without_waiting_for_the_debounce() -> None:
    store, calls = MemoryStore(), Calls()
    writer = MemoryRegistry(store)
    gone, stays = rec("gone"), rec("stays")
    await writer.publish(gone)
    await writer.publish(stays)
    feed, _ = await start(store, calls, debounce_s=30.0)
    t0 = time.monotonic()
    await writer.withdraw(gone.key)
    await calls.until(lambda records, status: gone.key not in records, timeout_s=2.0)
    assert calls.seen[-1][0] == {stays.key: stays}
    assert calls.seen[-1][2] - t0 < 1.0
    await feed.stop()


async def test_an_expired_record_means_cluster_gone() -> None:
    store, calls = MemoryStore(), Calls()
    writer = MemoryRegistry(store)
    r = rec("a")
    await writer.publish(r, ttl_s=0.3)
    feed, _ = await start(store, calls, debounce_s=30.0)
    await writer.abandon(r.key)
    await calls.until(lambda records, status: not records, timeout_s=3.0)
    assert calls.seen[-1][1].up
    await feed.stop()


async def test_an_unreachable_registry_keeps_the_last_snapshot_and_says_stale() -> None:
    store, calls = MemoryStore(), Calls()
    writer = MemoryRegistry(store)
    a, b = rec("a"), rec("b")
    await writer.publish(a)
    feed, metrics = await start(
        store, calls, debounce_s=0.01, backoff_initial_s=0.02, backoff_max_s=0.05
    )
    before = time.time()
    store.set_available(False)
    await calls.until(lambda records, status: not status.up)
    records, status, _ = calls.seen[-1]
    assert records == {a.key: a}, "the last known endpoints stay in service"
    assert status.stale_since is not None and status.stale_since >= before - 0.01
    assert value(metrics, "portway_registry_up", backend="memory") == 0
    await asyncio.sleep(0.3)
    assert (value(metrics, "portway_registry_reconnects_total", backend="memory") or 0) >= 2
    assert feed.records == {a.key: a}
    store.set_available(True)
    await writer.publish(b)
    await calls.until(lambda records, status: status.up and b.key in records)
    assert calls.seen[-1][1].stale_since is None
    assert value(metrics, "portway_registry_up", backend="memory") == 1
    await feed.stop()


async def test_bad_records_are_counted_and_the_feed_goes_on() -> None:
    store, calls = MemoryStore(), Calls()
    writer = MemoryRegistry(store)
    feed, metrics = await start(store, calls, debounce_s=0.01)
    store.put_raw("portway/v1/services/shop/web/bad", "{not json")
    good = rec("good")
    await writer.publish(good)
    await calls.until(lambda records, status: records == {good.key: good})
    assert value(metrics, "portway_registry_bad_records_total", backend="memory") == 1
    await feed.stop()


async def test_a_failing_callback_does_not_stop_the_feed() -> None:
    store = MemoryStore()
    writer = MemoryRegistry(store)
    seen: list[int] = []

    def explode(changes: Mapping[ServiceKey, ServiceRecord | None], status: FeedStatus) -> None:
        seen.append(len(changes))
        raise RuntimeError("compile failed")

    feed = EndpointFeed(
        MemoryRegistry(store), explode, debounce_s=0.01, metrics_registry=CollectorRegistry()
    )
    feed.start()
    await writer.publish(rec("a"))
    await writer.publish(rec("b"))
    deadline = time.monotonic() + 3
    while sum(seen) != 2:
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.01)
    await feed.stop()


async def test_each_callback_carries_only_the_keys_that_changed() -> None:
    store, calls = MemoryStore(), Calls()
    writer = MemoryRegistry(store)
    fleet = [rec(f"c{i}") for i in range(50)]
    for r in fleet:
        await writer.publish(r)
    feed, _ = await start(store, calls, debounce_s=0.01)
    assert calls.changes[0] == {r.key: r for r in fleet}, "the first call carries every record"
    moved = rec("c7", node_port=30099)
    await writer.publish(moved)
    await calls.until(lambda records, status: records[moved.key] == moved)
    assert calls.changes[-1] == {moved.key: moved}
    await writer.withdraw(fleet[3].key)
    await calls.until(lambda records, status: fleet[3].key not in records)
    assert calls.changes[-1] == {fleet[3].key: None}
    await writer.publish(fleet[0])  # the same value again: nothing to hand over
    await asyncio.sleep(0.1)
    assert calls.changes[-1] == {fleet[3].key: None}
    await feed.stop()
