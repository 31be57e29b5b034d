"""EndpointFeed through registry outages: last records kept, said once, up again at once.

Product rule: registry down, keep serving the last known endpoints, retry
with backoff, say so in logs and metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from test_feed import Calls, rec, start, value

from gateway.runtime.feed import EndpointFeed
from portway.registry.files import FilesRegistry
from portway.registry.memory import MemoryRegistry, MemoryStore

pytestmark = pytest.mark.timeout(30)

DOWN = "registry unreachable; serving the last known endpoints"
UP = "registry reachable again"


async def test_the_feed_is_up_again_once_the_registry_answers_even_with_nothing_new(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, calls = MemoryStore(), Calls()
    a = rec("a")
    await MemoryRegistry(store).publish(a)
    feed, metrics = await start(
        store, calls, debounce_s=0.01, backoff_initial_s=0.02, backoff_max_s=0.05
    )
    caplog.set_level(logging.INFO, logger="gateway.runtime.feed")
    store.set_available(False)
    await calls.until(lambda records, status: not status.up)
    await asyncio.sleep(0.3)  # several reconnect attempts
    assert (value(metrics, "portway_registry_reconnects_total", backend="memory") or 0) >= 3
    store.set_available(True)
    healed = time.monotonic()
    await calls.until(lambda records, status: status.up, timeout_s=2.0)
    assert time.monotonic() - healed < 0.5
    assert calls.seen[-1][0] == {a.key: a} and calls.changes[-1] == {}
    assert value(metrics, "portway_registry_up", backend="memory") == 1
    assert [r.getMessage() for r in caplog.records] == [DOWN, UP], "once per change of state"
    await feed.stop()


async def test_each_outage_starts_its_backoff_afresh() -> None:
    store, calls = MemoryStore(), Calls()
    await MemoryRegistry(store).publish(rec("a"))
    feed, _ = await start(store, calls, debounce_s=0.01, backoff_initial_s=0.05, backoff_max_s=3.0)
    store.set_available(False)
    await asyncio.sleep(2.0)  # the backoff has grown to ~0.8-1.6 s
    store.set_available(True)
    await calls.until(lambda records, status: status.up, timeout_s=4.0)
    store.set_available(False)
    await calls.until(lambda records, status: not status.up)
    await asyncio.sleep(0.1)
    store.set_available(True)
    healed = time.monotonic()
    await calls.until(lambda records, status: status.up, timeout_s=4.0)
    assert time.monotonic() - healed < 0.6, "the second outage waited out the first's backoff"
    await feed.stop()


async def test_a_files_registry_that_vanishes_keeps_the_records_in_force(tmp_path: Path) -> None:
    """The drills' registry outage at the feed: the path the gateway reads is a link, removed
    for longer than the records' TTL while their writer keeps renewing them."""
    real, link = tmp_path / "store", tmp_path / "registry"
    writer = FilesRegistry(real)
    a, b = rec("a"), rec("b")
    await writer.publish(a, ttl_s=0.5)
    link.symlink_to(real, target_is_directory=True)
    calls, metrics = Calls(), CollectorRegistry()
    feed = EndpointFeed(
        FilesRegistry(link),
        calls,
        debounce_s=0.01,
        metrics_registry=metrics,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    feed.start()
    await asyncio.wait_for(feed.synced.wait(), 5)
    link.unlink()
    await calls.until(lambda records, status: not status.up, timeout_s=3.0)
    assert value(metrics, "portway_registry_up", backend="files") == 0
    await asyncio.sleep(1.5)  # three TTLs
    assert feed.records == {a.key: a}
    assert all(records == {a.key: a} for records, _, _ in calls.seen), "an outage lost records"
    link.symlink_to(real, target_is_directory=True)
    await calls.until(lambda records, status: status.up, timeout_s=2.0)
    assert calls.seen[-1][0] == {a.key: a}
    await writer.publish(b, ttl_s=0.5)
    await calls.until(lambda records, status: records == {a.key: a, b.key: b})
    assert value(metrics, "portway_registry_up", backend="files") == 1
    await feed.stop()
    await feed.registry.close()
    await writer.close()
