"""The in-memory fake's own extras: compaction and outage simulation."""

from __future__ import annotations

import asyncio

import pytest
from record_builders import rec

from portway.registry.base import RegistryUnavailable, Snapshot
from portway.registry.memory import MemoryRegistry, MemoryStore


async def test_a_watch_from_a_compacted_revision_gets_a_snapshot() -> None:
    store = MemoryStore()
    reg = MemoryRegistry(store)
    await reg.publish(rec("a"))
    await reg.publish(rec("b"))
    store.compact(store.revision)
    async with asyncio.timeout(2):
        async for item in reg.watch(0):
            assert isinstance(item, Snapshot)
            assert sorted(k.cluster for k in item.records) == ["a", "b"]
            break


async def test_an_unavailable_store_ends_watches_with_registry_unavailable() -> None:
    store = MemoryStore()
    reg = MemoryRegistry(store)

    async def follow() -> None:
        async for _ in reg.watch(0):
            pass

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.01)
    store.set_available(False)
    with pytest.raises(RegistryUnavailable):
        await asyncio.wait_for(task, 2)
    with pytest.raises(RegistryUnavailable):
        await reg.publish(rec("a"))
