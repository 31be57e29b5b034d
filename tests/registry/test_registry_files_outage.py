"""Files backend outages: a directory that cannot be read is not a directory with no records.

The gateway reads its registry through a path (here, as in the drills, a link
to the directory the controllers write); when that path cannot be read the
reader keeps its records, decides no expiry, and reads again with backoff.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from record_builders import rec

from portway.model import ServiceKey, ServiceRecord
from portway.registry.base import Change, ChangeKind, RegistryUnavailable, apply
from portway.registry.files import FilesRegistry

pytestmark = pytest.mark.timeout(30)


class Follower:
    """Folds a watch into a state; `follow()` starts it again after it raised."""

    def __init__(self, reg: FilesRegistry, records: dict[ServiceKey, ServiceRecord], rev: int):
        self.reg, self.state, self.revision = reg, dict(records), rev
        self.changes: list[Change] = []
        self.task = self.follow()

    def follow(self) -> asyncio.Task[None]:
        async def run() -> None:
            async for item in self.reg.watch(self.revision):
                if isinstance(item, Change):
                    self.changes.append(item)
                self.state = apply(self.state, item)
                self.revision = item.revision

        self.task = asyncio.create_task(run())
        return self.task

    async def until(self, want: dict[ServiceKey, ServiceRecord], timeout_s: float = 5.0) -> float:
        start = time.monotonic()
        while self.state != want:
            assert time.monotonic() - start < timeout_s, f"{self.state} != {want}"
            await asyncio.sleep(0.02)
        return time.monotonic() - start

    def deleted(self) -> set[str]:
        return {c.key.cluster for c in self.changes if c.kind is ChangeKind.DELETE}


async def test_an_unreadable_directory_is_an_outage_and_an_empty_one_has_no_records(
    tmp_path: Path,
) -> None:
    real, link = tmp_path / "store", tmp_path / "registry"
    writer = FilesRegistry(real)
    a = rec("a")
    await writer.publish(a, ttl_s=None)
    link.symlink_to(real, target_is_directory=True)
    reader = FilesRegistry(link)
    assert (await reader.snapshot()).records == {a.key: a}

    link.unlink()
    with pytest.raises(RegistryUnavailable, match=r"registry cannot be read: No such file"):
        await reader.snapshot()
    link.write_text("not a directory")
    with pytest.raises(RegistryUnavailable, match="registry cannot be read"):
        await reader.snapshot()
    assert {k: rf.record for k, rf in reader.view.live.items()} == {a.key: a}

    with pytest.raises(RegistryUnavailable, match="registry cannot be read: not a directory"):
        await reader.list_state("portway/rollouts/")
    with pytest.raises(RegistryUnavailable):
        await reader.write_state("portway/rollouts/web", "x", version=0)

    link.unlink()
    link.symlink_to(real, target_is_directory=True)
    assert (await reader.snapshot()).records == {a.key: a}
    assert await reader.list_state("portway/rollouts/") == {}, "no state/ yet: no values"
    await writer.withdraw(a.key)
    assert sorted(os.listdir(real)) == [".portway.lock"]
    assert (await reader.snapshot()).records == {}, "exists and empty: the cluster has nothing"
    await reader.close()
    await writer.close()


async def test_no_record_expires_during_an_outage_and_dead_writers_records_go_after_it(
    tmp_path: Path,
) -> None:
    real, link = tmp_path / "store", tmp_path / "registry"
    alive, dying = FilesRegistry(real), FilesRegistry(real)
    kept, dead = rec("kept"), rec("dead")
    await alive.publish(kept, ttl_s=0.6)
    await dying.publish(dead, ttl_s=0.6)
    link.symlink_to(real, target_is_directory=True)
    reader = FilesRegistry(link)
    snap = await reader.snapshot()
    follower = Follower(reader, dict(snap.records), snap.revision)

    link.unlink()
    await dying.abandon(dead.key)  # its writer dies during the outage
    with pytest.raises(RegistryUnavailable):
        await asyncio.wait_for(follower.task, 3)
    await asyncio.sleep(1.5)  # 2.5 TTLs: only a reader that guessed would expire anything
    with pytest.raises(RegistryUnavailable):
        await asyncio.wait_for(follower.follow(), 3)
    assert follower.state == {kept.key: kept, dead.key: dead}
    assert {k: rf.record for k, rf in reader.view.live.items()} == follower.state

    link.symlink_to(real, target_is_directory=True)
    follower.follow()
    await follower.until({kept.key: kept})
    assert follower.deleted() == {"dead"}, "expiry decided from the files, once readable"
    await asyncio.sleep(1.0)
    assert follower.state == {kept.key: kept} and follower.deleted() == {"dead"}
    follower.task.cancel()
    for reg in (reader, alive, dying):
        await reg.close()


async def test_a_directory_replaced_during_an_outage_is_watched_again(tmp_path: Path) -> None:
    """The notifier's watch is on the old directory; once the path reads again it is renewed,
    so a later write is seen at once, not at the next 30 s resync."""
    directory = tmp_path / "registry"
    writer = FilesRegistry(directory)
    a, b, c = rec("a"), rec("b"), rec("c")
    await writer.publish(a, ttl_s=None)
    reader = FilesRegistry(directory, poll_interval_s=0.1)
    snap = await reader.snapshot()
    follower = Follower(reader, dict(snap.records), snap.revision)
    await asyncio.sleep(0.3)  # the notifier is watching
    directory.rename(tmp_path / "old")
    with pytest.raises(RegistryUnavailable):
        await asyncio.wait_for(follower.task, 3)

    replacement = FilesRegistry(directory)
    await replacement.publish(b, ttl_s=None)
    follower.follow()
    await follower.until({b.key: b})
    await asyncio.sleep(0.5)  # the renewed notifier is watching
    await replacement.publish(c, ttl_s=None)
    assert await follower.until({b.key: b, c.key: c}, timeout_s=5) < 2.0
    follower.task.cancel()
    for reg in (reader, writer, replacement):
        await reg.close()


async def test_a_writer_cut_off_gets_unavailable_and_keeps_renewing_its_leases(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "registry"
    writer = FilesRegistry(directory)
    a = rec("a")
    lease = await writer.publish(a, ttl_s=0.6)
    directory.rename(tmp_path / "away")
    with pytest.raises(RegistryUnavailable):
        await writer.publish(rec("b"), ttl_s=0.6)
    await asyncio.sleep(0.5)  # renewal rounds fail meanwhile
    assert "files leases not renewed; retrying" in caplog.messages
    (tmp_path / "away").rename(directory)
    before = os.stat(next(directory.glob("*a*.json"))).st_mtime
    await asyncio.sleep(0.5)
    assert not lease.lost and writer._leases == {a.key: lease}
    assert os.stat(next(directory.glob("*a*.json"))).st_mtime > before
    await writer.close()
    assert list(directory.glob("*.json")) == []
