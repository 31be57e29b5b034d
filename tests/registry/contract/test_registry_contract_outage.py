"""The outage half of the `Registry` promise, on every backend: unreachable is not empty.

A reader cut off from the store (its own path gone; the writers carry on and
keep renewing) gets `RegistryUnavailable` from its watch and its snapshot,
never a DELETE: nothing it read expires while it cannot look, even for
longer than the records' TTL. Healed, a watch resumed from its last revision
brings it to the store's state, with what was written meanwhile. State
values (rollout statuses) are not read as absent either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import pytest
from harness import Harness

from portway.model import Node, ServiceKey, ServicePort, ServiceRecord
from portway.registry.base import (
    Change,
    ChangeKind,
    Registry,
    RegistryUnavailable,
    Snapshot,
    apply,
)

pytestmark = pytest.mark.timeout(90)


def rec(cluster: str) -> ServiceRecord:
    return ServiceRecord(
        cluster=cluster,
        namespace="shop",
        service="web",
        region="eu",
        ports=(ServicePort("http", 80, 30080),),
        nodes=(Node("n1", "10.0.0.1", "eu-1a"),),
    )


class Follower:
    """A reader's state, folded from its watch; `follow()` (re)starts the watch."""

    def __init__(self, reg: Registry, snap: Snapshot) -> None:
        self.reg = reg
        self.state: dict[ServiceKey, ServiceRecord] = dict(snap.records)
        self.revision = snap.revision
        self.items: list[Change | Snapshot] = []
        self.task = self.follow()

    def follow(self) -> asyncio.Task[None]:
        async def run() -> None:
            async for item in self.reg.watch(self.revision):
                self.items.append(item)
                self.state = apply(self.state, item)
                self.revision = item.revision

        self.task = asyncio.create_task(run())
        return self.task

    async def until(self, want: Mapping[ServiceKey, ServiceRecord], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.state != dict(want):
            assert not self.task.done() or self.task.exception() is None, self.task.exception()
            assert time.monotonic() < deadline, f"watch state {self.state} != {dict(want)}"
            await asyncio.sleep(0.02)


async def test_a_reader_cut_off_keeps_what_it_read_and_catches_up_once_healed(
    harness: Harness,
) -> None:
    ttl = max(1.0, harness.ttl_floor_s)
    writer = harness.session()
    partition = await harness.partitioned_reader()
    a, b = rec("a"), rec("b")
    await writer.publish(a, ttl_s=ttl)
    await writer.write_state("portway/test-state/x", "kept", version=0)
    follower = Follower(partition.reader, await partition.reader.snapshot())
    assert follower.state == {a.key: a}

    await partition.cut()
    with pytest.raises(RegistryUnavailable):
        await asyncio.wait_for(follower.task, 5)
    with pytest.raises(RegistryUnavailable):
        await partition.reader.snapshot()
    with pytest.raises(RegistryUnavailable):
        await partition.reader.list_state("portway/test-state/")
    with pytest.raises(RegistryUnavailable):
        await asyncio.wait_for(follower.follow(), 5)  # the caller's retry, still cut off
    await asyncio.sleep(ttl * 1.5)  # past the TTL: the writer renews all along

    await partition.heal()
    listed = await partition.reader.list_state("portway/test-state/")
    assert [e.value for e in listed.values()] == ["kept"]
    await writer.publish(b, ttl_s=ttl)
    follower.follow()
    await follower.until({a.key: a, b.key: b}, timeout_s=10)
    await asyncio.sleep(ttl)
    assert follower.state == {a.key: a, b.key: b}
    follower.task.cancel()
    await asyncio.gather(follower.task, return_exceptions=True)
    deletes = [i for i in follower.items if isinstance(i, Change) and i.kind is ChangeKind.DELETE]
    assert deletes == [], "an outage read as records gone"
    assert all(a.key in i.records for i in follower.items if isinstance(i, Snapshot))
