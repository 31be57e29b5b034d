"""Files backend specifics: hand-written records, TTL by mtime, atomic writes, polling."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from record_builders import rec

from portway.model import Node, ServicePort, ServiceRecord
from portway.registry.base import Change, ChangeKind, OwnershipError, Snapshot
from portway.registry.files import FilesRegistry, read_records
from portway.registry.record_files import TTL_FIELD, load_record_file

pytestmark = pytest.mark.timeout(30)

HAND_WRITTEN = """
# static on-prem endpoints, maintained by hand
cluster: dc1
namespace: shop
service: web
region: onprem
ports:
  - {name: http, port: 80, nodePort: 30080}
nodes:
  - {name: rack1-a, address: 192.0.2.10, zone: rack1}
  - {name: rack2-a, address: 192.0.2.20, zone: rack2, ready: false}
"""


def test_a_hand_written_yaml_record_is_accepted_and_never_expires(tmp_path: Path) -> None:
    (tmp_path / "dc1.yaml").write_text(HAND_WRITTEN)
    old = time.time() - 10 * 365 * 86400
    os.utime(tmp_path / "dc1.yaml", (old, old))
    [record] = read_records(tmp_path)
    assert record.cluster == "dc1" and record.region == "onprem"
    assert [n.ready for n in record.nodes] == [True, False]


def test_ttl_counts_from_the_later_of_published_at_and_mtime(tmp_path: Path) -> None:
    body = rec("a").to_dict() | {"publishedAt": 1000.0, TTL_FIELD: 15}
    path = tmp_path / "a.json"
    path.write_text(json.dumps(body))
    os.utime(path, (2000.0, 2000.0))
    assert load_record_file(path).expires_at() == 2015.0
    assert read_records(tmp_path, now=2014.0) != []
    assert read_records(tmp_path, now=2015.0) == []


def test_bad_files_are_skipped_and_the_rest_read(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(HAND_WRITTEN)
    (tmp_path / "broken.yaml").write_text("cluster: [unclosed")
    (tmp_path / "wrong.json").write_text(json.dumps({"cluster": "x"}))
    (tmp_path / "notes.txt").write_text("ignored: not a record suffix")
    assert [r.cluster for r in read_records(tmp_path)] == ["dc1"]


async def test_a_hand_written_record_cannot_be_taken_over_by_a_publisher(tmp_path: Path) -> None:
    (tmp_path / "dc1.yaml").write_text(HAND_WRITTEN)
    reg = FilesRegistry(tmp_path)
    with pytest.raises(OwnershipError):
        await reg.publish(rec("dc1"), ttl_s=10)
    await reg.close()
    assert [r.region for r in read_records(tmp_path)] == ["onprem"]


async def test_writes_leave_no_temporary_files_and_renewal_touches_the_file(
    tmp_path: Path,
) -> None:
    reg = FilesRegistry(tmp_path)
    await reg.publish(rec("a"), ttl_s=0.6)
    [path] = [p for p in tmp_path.iterdir() if p.suffix == ".json"]
    before = path.stat().st_mtime
    content = path.read_bytes()
    await asyncio.sleep(0.5)
    assert path.stat().st_mtime > before, "renewal touches the file"
    assert path.read_bytes() == content, "renewal does not rewrite the record"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    await reg.close()
    assert read_records(tmp_path) == []


@pytest.mark.parametrize("force_polling", [True, False], ids=["polling", "inotify"])
async def test_a_watcher_sees_files_dropped_in_by_hand(tmp_path: Path, force_polling: bool) -> None:
    reg = FilesRegistry(tmp_path, force_polling=force_polling, poll_interval_s=0.05)
    start = await reg.snapshot()
    items: list[Change | Snapshot] = []

    async def follow() -> None:
        async for item in reg.watch(start.revision):
            items.append(item)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.1)
    (tmp_path / "dc1.yaml").write_text(HAND_WRITTEN)
    deadline = time.monotonic() + 5
    while not items:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    (tmp_path / "dc1.yaml").unlink()
    while len(items) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    task.cancel()
    await reg.close()
    assert [(i.kind, i.key.cluster) for i in items if isinstance(i, Change)] == [
        (ChangeKind.PUT, "dc1"),
        (ChangeKind.DELETE, "dc1"),
    ]


async def test_a_watch_from_an_unknown_revision_starts_with_a_snapshot(tmp_path: Path) -> None:
    (tmp_path / "dc1.yaml").write_text(HAND_WRITTEN)
    reg = FilesRegistry(tmp_path)
    async with asyncio.timeout(5):
        async for item in reg.watch(12345):
            assert isinstance(item, Snapshot)
            assert [k.cluster for k in item.records] == ["dc1"]
            break
    await reg.close()


def _write_record(path: Path, record: ServiceRecord) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    tmp.write_text(json.dumps(record.to_dict()))
    tmp.replace(path)


@pytest.mark.parametrize("force_polling", [True, False], ids=["polling", "inotify"])
async def test_a_watcher_reads_only_the_files_that_changed(
    tmp_path: Path, force_polling: bool
) -> None:
    fleet = [rec(f"c{i}") for i in range(200)]
    for r in fleet:
        _write_record(tmp_path / f"{r.cluster}.json", r)
    reg = FilesRegistry(tmp_path, force_polling=force_polling, poll_interval_s=0.05)
    start = await reg.snapshot()
    assert len(start.records) == 200 and reg.view.reads == 200, "startup reads each file once"
    items: list[Change | Snapshot] = []

    async def follow() -> None:
        async for item in reg.watch(start.revision):
            items.append(item)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    assert reg.view.reads == 200, "starting the watch and idle polls read nothing"
    moved = ServiceRecord(
        cluster="c5",
        namespace="shop",
        service="web",
        ports=(ServicePort("http", 80, 30099),),
        nodes=(Node("n1", "10.0.0.5"),),
    )
    _write_record(tmp_path / "c5.json", moved)
    (tmp_path / "c9.json").unlink()
    deadline = time.monotonic() + 5
    while len(items) < 2:
        assert time.monotonic() < deadline, items
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    task.cancel()
    await reg.close()
    changes = {(i.kind, i.key.cluster) for i in items if isinstance(i, Change)}
    assert changes == {(ChangeKind.PUT, "c5"), (ChangeKind.DELETE, "c9")} and len(items) == 2
    assert reg.view.reads == 201, "one changed file read once; the deleted one not at all"


async def test_a_record_expires_at_its_deadline_without_rereading_the_directory(
    tmp_path: Path,
) -> None:
    for i in range(50):
        _write_record(tmp_path / f"c{i}.json", rec(f"c{i}"))
    short = rec("short").to_dict() | {TTL_FIELD: 0.4, "publishedAt": time.time()}
    (tmp_path / "short.json").write_text(json.dumps(short))
    reg = FilesRegistry(tmp_path)
    start = await reg.snapshot()
    assert len(start.records) == 51
    async with asyncio.timeout(5):
        async for item in reg.watch(start.revision):
            assert isinstance(item, Change) and item.kind is ChangeKind.DELETE
            assert item.key.cluster == "short"
            break
    assert reg.view.reads == 51
    await reg.close()


async def test_publishing_over_a_hand_written_record_is_refused_naming_its_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "dc1.yaml").write_text(HAND_WRITTEN)
    reg = FilesRegistry(tmp_path)
    try:
        with pytest.raises(OwnershipError, match=r"hand-written dc1\.yaml"):
            await reg.publish(rec("dc1"))
    finally:
        await reg.close()
