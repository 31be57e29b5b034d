"""Two replicas and restarts: one Lease holder publishes; takeover; no flap on restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from conftest import LEASES, NODES, SERVICES, eventually, node, service
from kube_emulator import KubeEmulator

from portway.model import ServiceKey
from portway.registry.base import ChangeKind, Snapshot
from portway.registry.memory import MemoryRegistry, MemoryStore

KEY = ServiceKey("shop", "web", "c1")


def cluster(emulator: KubeEmulator) -> None:
    emulator.put(NODES, node("n1", "127.0.1.1"))
    emulator.put(NODES, node("n2", "127.0.1.2"))
    emulator.put(SERVICES, service("shop", "web"))


class Timeline:
    """Every change of KEY in the registry, with the monotonic time it was seen."""

    def __init__(self) -> None:
        self.changes: list[tuple[float, ChangeKind]] = []

    def absent_gaps(self) -> list[float]:
        gaps, deleted_at = [], None
        for at, kind in self.changes:
            if kind is ChangeKind.DELETE:
                deleted_at = at
            elif deleted_at is not None:
                gaps.append(at - deleted_at)
                deleted_at = None
        if deleted_at is not None:
            gaps.append(float("inf"))
        return gaps


@pytest.fixture
async def timeline() -> AsyncIterator[tuple[MemoryStore, Timeline]]:
    store, line = MemoryStore(), Timeline()

    async def follow() -> None:
        async for item in MemoryRegistry(store).watch(0):
            if not isinstance(item, Snapshot) and item.key == KEY:
                line.changes.append((time.monotonic(), item.kind))

    task = asyncio.create_task(follow())
    yield store, line
    task.cancel()


def owner(store: MemoryStore) -> str:
    entry = store.entries.get(KEY.path())
    return entry.owner if entry is not None else ""


@pytest.mark.parametrize("graceful", [True, False], ids=["stops", "dies"])
async def test_two_replicas_one_publishes_and_the_other_takes_over(
    emulator, start_controller, timeline, graceful
):
    cluster(emulator)
    store, line = timeline
    regs = {"a": MemoryRegistry(store), "b": MemoryRegistry(store)}
    a, b = await asyncio.gather(
        start_controller(regs["a"], identity="a"), start_controller(regs["b"], identity="b")
    )
    await eventually(lambda: (a.leading or b.leading) and owner(store) != "")
    leader, follower = (a, b) if a.leading else (b, a)
    await asyncio.sleep(0.5)
    assert leader.leading and not follower.leading, "exactly one leader, and it stays"
    assert owner(store) == regs[leader.options.identity].session
    assert follower.publisher.published == {} and follower.derivation is not None
    lease = emulator.get(LEASES, "portway-system", "portway-controller")
    assert lease is not None and lease["spec"]["holderIdentity"] == leader.options.identity

    if not graceful:  # a crash cannot hand the Lease back
        leader.elector.election.release = lambda: None  # type: ignore[method-assign]
    stopped = time.monotonic()
    await leader.stop()
    took = await eventually(lambda: follower.leading, 3.0, "no takeover")
    assert took < (1.0 if graceful else 1.5 + 0.8), took
    new_session = regs[follower.options.identity].session
    await eventually(lambda: owner(store) == new_session, 4.0, "new leader never published")
    assert time.monotonic() - stopped < 2.0 + 1.0, "published once the old TTL ran out"
    gaps = line.absent_gaps()
    assert len(gaps) == 1 and gaps[0] < 0.2, f"one expiry, rewritten within 0.2 s: {gaps}"
    lease = emulator.get(LEASES, "portway-system", "portway-controller")
    assert lease["spec"]["holderIdentity"] == follower.options.identity
    assert lease["spec"]["leaseTransitions"] >= 1


async def test_restart_keeps_the_record_and_does_not_rewrite_it_early(
    emulator, start_controller, timeline
):
    cluster(emulator)
    store, line = timeline
    first = await start_controller(MemoryRegistry(store), identity="a")
    await eventually(lambda: owner(store) != "")
    published = store.snapshot().records[KEY]
    await first.stop()
    assert KEY in store.snapshot().records, "stopping withdraws nothing"

    second_registry = MemoryRegistry(store)
    second = await start_controller(second_registry, identity="a")
    await eventually(lambda: second.leading)
    await asyncio.sleep(0.3)
    assert store.snapshot().records[KEY] == published, "the old record stays live meanwhile"
    assert second.publisher.blocked.keys() == {KEY}
    await eventually(lambda: owner(store) == second_registry.session, 4.0)
    gaps = line.absent_gaps()
    assert len(gaps) == 1 and gaps[0] < 0.2, f"one expiry, rewritten within 0.2 s: {gaps}"
    assert second.publisher.blocked == {}
