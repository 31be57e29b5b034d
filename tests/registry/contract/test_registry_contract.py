"""The promise of `portway.registry.base.Registry`, checked on every backend."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

import pytest
from harness import Harness

from portway.model import Node, ServiceKey, ServicePort, ServiceRecord
from portway.registry.base import (
    Change,
    ChangeKind,
    OwnershipError,
    Registry,
    Snapshot,
    VersionConflict,
    apply,
)

pytestmark = pytest.mark.timeout(90)  # a real Consul agent needs TTLs of 10 s


def rec(cluster: str, service: str = "web", node_port: int = 30080, address: str = "10.0.0.1"):
    return ServiceRecord(
        cluster=cluster,
        namespace="shop",
        service=service,
        region="eu",
        ports=(ServicePort("http", 80, node_port),),
        nodes=(Node("n1", address, "eu-1a"),),
    )


class Reader:
    """Folds a watch into a state and keeps every item it saw."""

    def __init__(self, reg: Registry, snap: Snapshot) -> None:
        self.state: dict[ServiceKey, ServiceRecord] = dict(snap.records)
        self.revision = snap.revision
        self.items: list[Change | Snapshot] = []
        self._reg = reg
        self._task = asyncio.create_task(self._run(snap.revision))

    async def _run(self, revision: int) -> None:
        async for item in self._reg.watch(revision):
            self.items.append(item)
            self.state = apply(self.state, item)
            self.revision = item.revision

    async def until(self, want: Mapping[ServiceKey, ServiceRecord], timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.state != dict(want):
            assert time.monotonic() < deadline, f"watch state {self.state} != {dict(want)}"
            await asyncio.sleep(0.02)

    def changes(self) -> list[Change]:
        return [i for i in self.items if isinstance(i, Change)]

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_published_record_is_in_snapshot_and_watch(harness: Harness) -> None:
    writer, reader_reg = harness.session(), harness.session()
    reader = Reader(reader_reg, await reader_reg.snapshot())
    a = rec("a")
    await writer.publish(a, ttl_s=10)
    assert (await reader_reg.snapshot()).records == {a.key: a}
    await reader.until({a.key: a})
    await reader.stop()


async def test_changes_arrive_in_order_with_increasing_revisions(harness: Harness) -> None:
    writer, reader_reg = harness.session(), harness.session()
    reader = Reader(reader_reg, await reader_reg.snapshot())
    a1, b, a2 = rec("a"), rec("b"), rec("a", node_port=30081)
    await writer.publish(a1, ttl_s=10)
    await writer.publish(b, ttl_s=10)
    await writer.publish(a2, ttl_s=10)
    await writer.withdraw(b.key)
    await reader.until({a2.key: a2})
    await reader.stop()
    revisions = [i.revision for i in reader.items]
    assert revisions == sorted(revisions)
    seen = [(c.kind, c.key.cluster, c.record) for c in reader.changes()]
    if harness.exact_history:
        assert seen == [
            (ChangeKind.PUT, "a", a1),
            (ChangeKind.PUT, "b", b),
            (ChangeKind.PUT, "a", a2),
            (ChangeKind.DELETE, "b", None),
        ]
    else:
        # writes of one key may coalesce, but what is seen of a key is in write order
        of_a = [r for k, c, r in seen if c == "a"]
        assert of_a[-1] == a2 and all(r in (a1, a2) for r in of_a)
        assert of_a.index(a2) == len(of_a) - 1


async def test_watch_resumes_from_a_revision_without_gaps_or_duplicates(harness: Harness) -> None:
    writer, reader_reg = harness.session(), harness.session()
    start = await reader_reg.snapshot()
    first = Reader(reader_reg, start)
    a, b, c = rec("a"), rec("b"), rec("c")
    await writer.publish(a, ttl_s=10)
    await first.until({a.key: a})
    await first.stop()
    resume_at, state_then = first.revision, dict(first.state)
    await writer.publish(b, ttl_s=10)
    await writer.publish(c, ttl_s=10)
    await writer.withdraw(a.key)
    second = Reader(reader_reg, Snapshot(state_then, resume_at))
    await second.until({b.key: b, c.key: c})
    await second.stop()
    assert all(i.revision > resume_at for i in second.items if isinstance(i, Change))
    keys = [(c.kind, c.key.cluster) for c in second.changes()]
    assert len(keys) == len(set(keys)), f"duplicated changes after resume: {keys}"
    if harness.exact_history:
        assert keys == [(ChangeKind.PUT, "b"), (ChangeKind.PUT, "c"), (ChangeKind.DELETE, "a")]
        assert not any(isinstance(i, Snapshot) for i in second.items)


async def test_second_writer_of_a_key_is_refused_until_the_first_lets_go(
    harness: Harness,
) -> None:
    first, second = harness.session(), harness.session()
    mine, theirs = rec("a"), rec("a", address="10.0.0.2")
    await first.publish(mine, ttl_s=10)
    with pytest.raises(OwnershipError):
        await second.publish(theirs, ttl_s=10)
    assert (await second.snapshot()).records == {mine.key: mine}
    await first.publish(rec("a", node_port=30090), ttl_s=10)  # the owner may update
    await first.withdraw(mine.key)
    await second.publish(theirs, ttl_s=10)
    assert (await first.snapshot()).records == {theirs.key: theirs}
    with pytest.raises(OwnershipError):
        await first.publish(mine, ttl_s=10)


OWNER = "portway-controller/a"


def no_absence(reader: Reader, key: ServiceKey) -> None:
    """The key was never gone from the reader's view: no DELETE, no snapshot without it."""
    for item in reader.items:
        if isinstance(item, Snapshot):
            assert key in item.records, f"a snapshot without {key.path()}"
        else:
            assert item.kind is ChangeKind.PUT, f"{item.kind} of {item.key.path()}"


async def test_a_new_session_of_the_owner_adopts_its_key_without_a_delete(
    harness: Harness,
) -> None:
    """A restarted controller: the old session died with its lease alive; the new one
    publishes at once, and no watcher ever sees the record gone, then or when the old
    lease runs out."""
    ttl = max(2.0, harness.ttl_floor_s)
    old, reader_reg = harness.session(OWNER), harness.session()
    reader = Reader(reader_reg, await reader_reg.snapshot())
    before, after = rec("a"), rec("a", address="10.0.0.2")
    await old.publish(before, ttl_s=ttl)
    await reader.until({before.key: before})
    await old.abandon(before.key)
    await harness.session(OWNER).publish(after, ttl_s=ttl)
    await reader.until({after.key: after})
    await asyncio.sleep(ttl * 1.6)  # the old lease has run out meanwhile
    assert (await reader_reg.snapshot()).records == {after.key: after}
    assert reader.state == {after.key: after}
    await reader.stop()
    no_absence(reader, after.key)
    if harness.exact_history:
        assert [(c.kind, c.record) for c in reader.changes()] == [
            (ChangeKind.PUT, before),
            (ChangeKind.PUT, after),
        ]


async def test_a_session_of_another_owner_is_refused_the_key_an_owner_holds(
    harness: Harness,
) -> None:
    holder = harness.session(OWNER)
    mine, theirs = rec("a"), rec("a", address="10.0.0.2")
    await holder.publish(mine, ttl_s=10)
    for other in (harness.session("portway-controller/b"), harness.session()):
        with pytest.raises(OwnershipError) as refused:
            await other.publish(theirs, ttl_s=10)
        assert refused.value.owner == OWNER
    await holder.abandon(mine.key)  # crashed: refused all the same while the lease lives
    with pytest.raises(OwnershipError):
        await harness.session("portway-controller/b").publish(theirs, ttl_s=10)
    assert (await harness.session().snapshot()).records == {mine.key: mine}


async def test_an_adopted_record_lives_by_the_new_lease_alone(harness: Harness) -> None:
    """The old lease was long, the adopting one short: once the adopter stops renewing,
    the record expires after the short TTL."""
    short = max(2.0, harness.ttl_floor_s)
    long = 6 * short
    old, new, reader_reg = harness.session(OWNER), harness.session(OWNER), harness.session()
    reader = Reader(reader_reg, await reader_reg.snapshot())
    first, adopted = rec("a"), rec("a", node_port=30090)
    await old.publish(first, ttl_s=long)
    await old.abandon(first.key)
    await new.publish(adopted, ttl_s=short)
    await reader.until({adopted.key: adopted})
    await new.abandon(adopted.key)
    abandoned_at = time.monotonic()
    await reader.until({}, timeout_s=3 * short + 5)
    waited = time.monotonic() - abandoned_at
    assert short * 0.5 <= waited < long * 0.75, f"expired {waited:.2f}s after abandon"
    await reader.stop()


async def test_the_session_a_key_was_adopted_from_can_no_longer_withdraw_it(
    harness: Harness,
) -> None:
    """A replica that lost the Lease but still runs: its withdraw, close and renewals
    leave the record its successor adopted alone."""
    ttl = max(2.0, harness.ttl_floor_s)
    old, new, reader_reg = harness.session(OWNER), harness.session(OWNER), harness.session()
    reader = Reader(reader_reg, await reader_reg.snapshot())
    first, adopted = rec("a"), rec("a", address="10.0.0.2")
    await old.publish(first, ttl_s=ttl)
    await new.publish(adopted, ttl_s=ttl)
    await reader.until({adopted.key: adopted})
    await old.withdraw(first.key)
    await old.close()
    assert (await reader_reg.snapshot()).records == {adopted.key: adopted}
    await asyncio.sleep(ttl * 1.6)
    assert (await reader_reg.snapshot()).records == {adopted.key: adopted}
    await reader.stop()
    no_absence(reader, adopted.key)


async def test_abandoned_record_expires_and_renewed_one_stays(harness: Harness) -> None:
    ttl = max(2.0, harness.ttl_floor_s)
    writer, reader_reg = harness.session(), harness.session()
    reader = Reader(reader_reg, await reader_reg.snapshot())
    kept, dropped = rec("kept"), rec("dropped")
    await writer.publish(kept, ttl_s=ttl)
    await writer.publish(dropped, ttl_s=ttl)
    await reader.until({kept.key: kept, dropped.key: dropped})
    abandoned_at = time.monotonic()
    await writer.abandon(dropped.key)
    await reader.until({kept.key: kept}, timeout_s=3 * ttl + 5)
    waited = time.monotonic() - abandoned_at
    assert waited >= ttl * 0.5, f"expired after {waited:.2f}s, before its TTL"
    await asyncio.sleep(ttl * 0.5)  # the renewed record is now well past its TTL
    assert (await reader_reg.snapshot()).records == {kept.key: kept}
    await reader.stop()
    assert (ChangeKind.DELETE, dropped.key) in [(c.kind, c.key) for c in reader.changes()]
    # an expired key is free for another writer
    await harness.session().publish(rec("dropped", address="10.0.0.9"), ttl_s=ttl)


async def test_a_record_published_again_after_expiry_is_kept_alive(harness: Harness) -> None:
    """A crashed-and-restarted writer: its first lease expired, the new one must be renewed.

    The writer held nothing in between, so whatever renewal schedule it had
    (none, or one for the old lease) must pick up the new lease at once.
    """
    ttl = max(2.0, harness.ttl_floor_s)
    writer, reader_reg = harness.session(), harness.session()
    reader = Reader(reader_reg, await reader_reg.snapshot())
    a = rec("again")
    await writer.publish(a, ttl_s=ttl)
    await reader.until({a.key: a})
    await writer.abandon(a.key)
    await reader.until({}, timeout_s=3 * ttl + 5)
    back = rec("again", address="10.0.0.7")
    await writer.publish(back, ttl_s=ttl)
    await reader.until({back.key: back})
    seen = len(reader.items)
    await asyncio.sleep(ttl * 1.6)
    assert reader.state == {back.key: back}
    assert [i for i in reader.items[seen:] if isinstance(i, Change)] == []
    await reader.stop()


async def test_bad_records_are_logged_with_their_key_and_skipped(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    writer, reader_reg = harness.session(), harness.session()
    reader = Reader(reader_reg, await reader_reg.snapshot())
    good = rec("good")
    bad_key = "portway/v1/services/shop/web/bad"
    caplog.set_level(logging.WARNING)
    await harness.put_raw(bad_key, b'{"v": 1, "cluster": "bad", "namespace": "shop"}')
    await harness.put_raw("portway/v1/services/shop/web/worse", b"not json at all")
    await writer.publish(good, ttl_s=10)
    await reader.until({good.key: good})
    assert (await reader_reg.snapshot()).records == {good.key: good}
    assert not reader._task.done()
    await reader.stop()
    logged = [r for r in caplog.records if r.getMessage().startswith("skipping bad registry")]
    assert any("bad" in str(getattr(r, "key", "")) for r in logged), logged


async def test_withdraw_deletes_and_close_releases_what_a_session_holds(
    harness: Harness,
) -> None:
    writer, reader_reg = harness.session(), harness.session()
    a, b = rec("a"), rec("b")
    await writer.publish(a, ttl_s=10)
    await writer.publish(b, ttl_s=10)
    await writer.withdraw(a.key)
    await writer.withdraw(a.key)  # withdrawing twice is harmless
    assert (await reader_reg.snapshot()).records == {b.key: b}
    await writer.close()
    assert (await reader_reg.snapshot()).records == {}


STATE_KEY = "portway/v1/rollouts/shop/0"


async def test_a_state_value_is_created_once_and_read_back_with_its_version(
    harness: Harness,
) -> None:
    one, two = harness.session(), harness.session()
    assert await one.read_state(STATE_KEY) is None
    await one.write_state(STATE_KEY, '{"phase": "progressing"}', version=0)
    with pytest.raises(VersionConflict):
        await two.write_state(STATE_KEY, '{"phase": "paused"}', version=0)
    entry = await two.read_state(STATE_KEY)
    assert entry is not None and entry.value == '{"phase": "progressing"}'
    assert entry.version > 0


async def test_a_state_write_from_a_stale_read_loses_and_the_fresh_one_wins(
    harness: Harness,
) -> None:
    driver, operator = harness.session(), harness.session()
    await driver.write_state(STATE_KEY, "step 1", version=0)
    seen = await driver.read_state(STATE_KEY)
    assert seen is not None
    by_operator = await operator.read_state(STATE_KEY)
    assert by_operator is not None
    await operator.write_state(STATE_KEY, "paused", version=by_operator.version)
    with pytest.raises(VersionConflict):
        await driver.write_state(STATE_KEY, "step 2", version=seen.version)
    again = await driver.read_state(STATE_KEY)
    assert again is not None and again.value == "paused" and again.version != seen.version
    await driver.write_state(STATE_KEY, "paused, still", version=again.version)
    final = await operator.read_state(STATE_KEY)
    assert final is not None and final.value == "paused, still"


async def test_state_values_are_listed_by_prefix_deleted_by_version_and_outlive_sessions(
    harness: Harness,
) -> None:
    writer = harness.session()
    await writer.write_state("portway/v1/rollouts/shop/0", "a", version=0)
    await writer.write_state("portway/v1/rollouts/shop/checkout", "b", version=0)
    await writer.write_state("portway/v1/leases/rollout-driver", "c", version=0)
    await writer.close()
    reader = harness.session()
    listed = await reader.list_state("portway/v1/rollouts/")
    assert {k: e.value for k, e in listed.items()} == {
        "portway/v1/rollouts/shop/0": "a",
        "portway/v1/rollouts/shop/checkout": "b",
    }
    entry = listed["portway/v1/rollouts/shop/0"]
    with pytest.raises(VersionConflict):
        await reader.delete_state("portway/v1/rollouts/shop/0", version=entry.version + 1000)
    await reader.delete_state("portway/v1/rollouts/shop/0", version=entry.version)
    await reader.delete_state("portway/v1/rollouts/shop/0", version=0)  # absent: nothing to do
    assert await reader.read_state("portway/v1/rollouts/shop/0") is None
    assert list(await reader.list_state("portway/v1/rollouts/")) == [
        "portway/v1/rollouts/shop/checkout"
    ]


async def test_state_values_are_not_records_and_records_are_not_state(harness: Harness) -> None:
    writer, reader_reg = harness.session(), harness.session()
    reader = Reader(reader_reg, await reader_reg.snapshot())
    await writer.write_state(STATE_KEY, "progressing", version=0)
    a = rec("a")
    await writer.publish(a, ttl_s=10)
    await reader.until({a.key: a})
    assert (await reader_reg.snapshot()).records == {a.key: a}
    assert all(isinstance(c, Change) and c.key == a.key for c in reader.items)
    for prefix in ("portway/v1/services/", "portway/v1/", "portway/v1/services/shop/"):
        with pytest.raises(ValueError):
            await reader_reg.list_state(prefix)
    with pytest.raises(ValueError):
        await writer.write_state(a.key.path(), "{}", version=0)
    await reader.stop()
