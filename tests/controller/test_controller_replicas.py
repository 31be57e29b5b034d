"""Two replicas and restarts: one Lease holder publishes; takeover and restart adopt the
records in place, so neither the registry's watchers nor a gateway's feed ever sees the
cluster go; a writer of another identity still waits for the TTL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from conftest import LEASES, NODES, SERVICES, eventually, node, service
from kube_emulator import KubeEmulator
from prometheus_client import CollectorRegistry

from controller.publish import controller_owner
from gateway.runtime.feed import EndpointFeed, FeedStatus, RecordChanges
from portway.model import ServiceKey
from portway.registry.base import ChangeKind, Snapshot
from portway.registry.memory import MemoryRegistry, MemoryStore

KEY = ServiceKey("shop", "web", "c1")
OWNER = controller_owner("c1")
TTL_S = 2.0  # conftest.fast_options


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

    def kinds(self) -> list[ChangeKind]:
        return [kind for _, kind in self.changes]


class GatewayView:
    """A gateway's endpoint feed on the same store: what it hands its routing table."""

    def __init__(self, store: MemoryStore) -> None:
        self.handed: list[RecordChanges] = []
        self.feed = EndpointFeed(
            MemoryRegistry(store),
            self._on_changes,
            debounce_s=0.01,
            metrics_registry=CollectorRegistry(),
        )

    def _on_changes(self, changes: RecordChanges, status: FeedStatus) -> None:
        self.handed.append(dict(changes))

    def routes_to_the_cluster(self) -> bool:
        return KEY in self.feed.records

    def gone_since_first_seen(self) -> list[RecordChanges]:
        """Hand-overs that removed KEY after it first arrived (each one a routing gap)."""
        seen, gaps = False, []
        for changes in self.handed:
            if KEY in changes:
                if changes[KEY] is None and seen:
                    gaps.append(changes)
                seen = seen or changes[KEY] is not None
        return gaps


@pytest.fixture
async def timeline() -> AsyncIterator[tuple[MemoryStore, Timeline, GatewayView]]:
    store, line = MemoryStore(), Timeline()
    gateway = GatewayView(store)

    async def follow() -> None:
        async for item in MemoryRegistry(store).watch(0):
            if not isinstance(item, Snapshot) and item.key == KEY:
                line.changes.append((time.monotonic(), item.kind))

    task = asyncio.create_task(follow())
    gateway.feed.start()
    yield store, line, gateway
    await gateway.feed.stop()
    task.cancel()


def holder(store: MemoryStore) -> str:
    """The session whose lease KEY lives by."""
    entry = store.entries.get(KEY.path())
    return entry.session if entry is not None else ""


@pytest.mark.parametrize("graceful", [True, False], ids=["stops", "dies"])
async def test_two_replicas_one_publishes_and_the_new_leader_adopts_without_a_gap(
    emulator, start_controller, timeline, graceful
):
    cluster(emulator)
    store, line, gateway = timeline
    regs = {"a": MemoryRegistry(store, owner=OWNER), "b": MemoryRegistry(store, owner=OWNER)}
    a, b = await asyncio.gather(
        start_controller(regs["a"], identity="a"), start_controller(regs["b"], identity="b")
    )
    await eventually(lambda: (a.leading or b.leading) and holder(store) != "")
    leader, follower = (a, b) if a.leading else (b, a)
    await asyncio.sleep(0.5)
    assert leader.leading and not follower.leading, "exactly one leader, and it stays"
    assert holder(store) == regs[leader.options.identity].session
    assert follower.publisher.published == {} and follower.derivation is not None
    lease = emulator.get(LEASES, "portway-system", "portway-controller")
    assert lease is not None and lease["spec"]["holderIdentity"] == leader.options.identity
    await eventually(gateway.routes_to_the_cluster, 2.0, "the gateway never saw the record")

    if not graceful:  # a crash cannot hand the Lease back
        leader.elector.election.release = lambda: None  # type: ignore[method-assign]
    await leader.stop()
    took = await eventually(lambda: follower.leading, 3.0, "no takeover")
    assert took < (1.0 if graceful else 1.5 + 0.8), took
    new_session = regs[follower.options.identity].session
    adopted = await eventually(lambda: holder(store) == new_session, 1.0, "not adopted")
    assert adopted < 0.5, f"the new leader adopted the record {adopted:.2f} s after leading"
    await asyncio.sleep(TTL_S * 1.5)  # the old leader's lease has run out meanwhile
    assert holder(store) == new_session and KEY in store.snapshot().records
    assert ChangeKind.DELETE not in line.kinds(), f"the record went: {line.changes}"
    assert gateway.gone_since_first_seen() == [] and gateway.routes_to_the_cluster()
    lease = emulator.get(LEASES, "portway-system", "portway-controller")
    assert lease["spec"]["holderIdentity"] == follower.options.identity
    assert lease["spec"]["leaseTransitions"] >= 1


async def test_a_restarted_controller_adopts_the_record_at_once_and_nothing_sees_it_go(
    emulator, start_controller, timeline
):
    cluster(emulator)
    store, line, gateway = timeline
    first = await start_controller(MemoryRegistry(store, owner=OWNER), identity="a")
    await eventually(lambda: holder(store) != "")
    await eventually(gateway.routes_to_the_cluster, 2.0, "the gateway never saw the record")
    await first.stop()
    assert KEY in store.snapshot().records, "stopping withdraws nothing"

    second_registry = MemoryRegistry(store, owner=OWNER)
    started = time.monotonic()
    second = await start_controller(second_registry, identity="a")
    await eventually(lambda: holder(store) == second_registry.session, 1.5, "not adopted")
    assert time.monotonic() - started < TTL_S / 2, "adopted well before the old TTL ran out"
    assert second.publisher.blocked == {}
    await asyncio.sleep(TTL_S * 1.5)
    assert holder(store) == second_registry.session
    assert ChangeKind.DELETE not in line.kinds(), f"the record went: {line.changes}"
    assert gateway.gone_since_first_seen() == [] and gateway.routes_to_the_cluster()


async def test_a_writer_of_another_identity_waits_for_the_ttl(emulator, start_controller, timeline):
    """Two controllers that call themselves c1 but are not replicas of one deployment (their
    owners differ): the second is refused while the first's lease lives, and takes the key
    within one registry round trip of its expiry."""
    cluster(emulator)
    store, line, _ = timeline
    first = await start_controller(MemoryRegistry(store, owner=OWNER), identity="a")
    await eventually(lambda: holder(store) != "")
    published = store.snapshot().records[KEY]
    await first.stop()

    stranger = MemoryRegistry(store, owner="portway-controller/c1@elsewhere")
    second = await start_controller(stranger, identity="a")
    await eventually(lambda: second.leading)
    await asyncio.sleep(0.3)
    assert store.snapshot().records[KEY] == published, "the old record stays live meanwhile"
    assert second.publisher.blocked.keys() == {KEY}
    await eventually(lambda: holder(store) == stranger.session, 4.0)
    gaps = line.absent_gaps()
    assert len(gaps) == 1 and gaps[0] < 0.2, f"one expiry, rewritten within 0.2 s: {gaps}"
    assert second.publisher.blocked == {}


@pytest.mark.parametrize(("ttl_s", "warned"), [(2.0, True), (6.0, False)])
async def test_a_ttl_a_takeover_cannot_beat_is_logged_at_start(
    start_controller, caplog, ttl_s, warned
):
    """Lease 1.5 s + retry 0.2 s: a 2 s TTL renewed every 0.67 s may run out first."""
    caplog.set_level("WARNING", logger="portway.controller")
    await start_controller(MemoryRegistry(MemoryStore(), owner=OWNER), ttl_s=ttl_s)
    said = [r for r in caplog.records if r.getMessage().startswith("record TTL too short")]
    assert bool(said) == warned, said
