"""etcd-only behaviour: compaction re-list, lease fencing, a 3-member cluster, restarts."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from etcd_server import EtcdCluster
from prometheus_client import CollectorRegistry
from record_builders import rec

from gateway.runtime.feed import EndpointFeed, FeedStatus
from portway.model import ServiceKey, ServiceRecord
from portway.registry import etcd
from portway.registry.base import (
    Change,
    OwnershipError,
    RegistryUnavailable,
    Snapshot,
)
from portway.registry.etcd import DECODE_INLINE_BYTES, EtcdRegistry

pytestmark = pytest.mark.timeout(90)


def root() -> str:
    return f"test-{uuid.uuid4().hex[:10]}/"


async def test_watch_from_a_compacted_revision_resyncs_with_a_snapshot(
    etcd_endpoints: list[str],
) -> None:
    reg = EtcdRegistry(etcd_endpoints, root=root())
    try:
        start = (await reg.snapshot()).revision
        a, b = rec("a"), rec("b")
        await reg.publish(a, ttl_s=10)
        await reg.publish(b, ttl_s=10)
        await reg.withdraw(a.key)
        now = (await reg.snapshot()).revision
        await reg.client.call("/v3/kv/compaction", {"revision": str(now)})
        items: list[Change | Snapshot] = []
        async with asyncio.timeout(5):
            async for item in reg.watch(start):
                items.append(item)
                break
        assert isinstance(items[0], Snapshot)
        assert dict(items[0].records) == {b.key: b} and items[0].revision >= now
    finally:
        await reg.close()


async def test_a_writer_whose_lease_was_revoked_cannot_overwrite_the_new_owner(
    etcd_endpoints: list[str],
) -> None:
    prefix = root()
    first, second = (
        EtcdRegistry(etcd_endpoints, root=prefix),
        EtcdRegistry(etcd_endpoints, root=prefix),
    )
    try:
        lease = await first.publish(rec("a"), ttl_s=10)
        await first.client.revoke(lease.lease_id)  # as if it had expired during a partition
        await second.publish(rec("a", node_port=30099), ttl_s=10)
        with pytest.raises(OwnershipError):
            await first.publish(rec("a", node_port=30001), ttl_s=10)
        records = (await second.snapshot()).records
        assert [r.ports[0].node_port for r in records.values()] == [30099]
    finally:
        await first.close()
        await second.close()


async def test_an_unreachable_etcd_raises_registry_unavailable() -> None:
    reg = EtcdRegistry(["http://127.0.0.1:9"], request_timeout_s=0.5, failover_s=0.2)
    try:
        with pytest.raises(RegistryUnavailable):
            await reg.snapshot()
        with pytest.raises(RegistryUnavailable):
            async for _ in reg.watch(0):
                pass
    finally:
        await reg.close()


async def _follow(reg: EtcdRegistry, revision: int, seen: list[tuple[str, str, int]]) -> None:
    """A resuming watcher, as the feed runs it: reconnect from the last revision."""
    while True:
        try:
            async for item in reg.watch(revision):
                assert isinstance(item, Change), "resume after restart must not need a re-list"
                seen.append((item.kind.value, item.key.cluster, item.revision))
                revision = item.revision
        except RegistryUnavailable:
            await asyncio.sleep(0.1)


async def _until(check, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.mark.e2e
async def test_three_member_cluster_keeps_publishing_and_watching_with_one_member_killed(
    tmp_path: Path,
) -> None:
    cluster = EtcdCluster(tmp_path, size=3).start()
    writer = EtcdRegistry(cluster.endpoints, request_timeout_s=1.0, failover_s=5.0)
    reader = EtcdRegistry(cluster.endpoints, request_timeout_s=1.0, failover_s=5.0)
    seen: list[tuple[str, str, int]] = []
    task = None
    try:
        start = (await reader.snapshot()).revision
        task = asyncio.create_task(_follow(reader, start, seen))
        await writer.publish(rec("a"), ttl_s=3)
        await _until(lambda: len(seen) == 1)
        victim = cluster.members[reader.client.current]  # the member both are talking to
        victim.kill()
        await writer.publish(rec("b"), ttl_s=3)
        await writer.publish(rec("a", node_port=30081), ttl_s=3)
        await _until(lambda: len(seen) == 3)
        await asyncio.sleep(3.5)  # longer than the TTL: keepalives moved to a live member
        snap = await reader.snapshot()
        assert {k.cluster for k in snap.records} == {"a", "b"}
        assert [(k, c) for k, c, _ in seen] == [("put", "a"), ("put", "b"), ("put", "a")]
        assert [r for *_, r in seen] == sorted({r for *_, r in seen})
    finally:
        if task is not None:
            task.cancel()
        await writer.close()
        await reader.close()
        cluster.stop()


@pytest.mark.e2e
async def test_feed_and_watch_survive_an_etcd_restart_without_lost_or_repeated_changes(
    tmp_path: Path,
) -> None:
    cluster = EtcdCluster(tmp_path, size=1).start()
    member = cluster.members[0]
    writer = EtcdRegistry(cluster.endpoints, request_timeout_s=0.5, failover_s=0.2)
    reader = EtcdRegistry(cluster.endpoints, request_timeout_s=0.5, failover_s=0.2)
    statuses: list[tuple[dict[ServiceKey, ServiceRecord], FeedStatus]] = []

    folded: dict[ServiceKey, ServiceRecord] = {}

    def on_changes(changes: Mapping[ServiceKey, ServiceRecord | None], status: FeedStatus) -> None:
        for key, record in changes.items():
            if record is None:
                folded.pop(key, None)
            else:
                folded[key] = record
        statuses.append((dict(folded), status))

    feed = EndpointFeed(
        EtcdRegistry(cluster.endpoints, request_timeout_s=0.5, failover_s=0.2),
        on_changes,
        debounce_s=0.01,
        metrics_registry=CollectorRegistry(),
        backoff_initial_s=0.05,
        backoff_max_s=0.3,
    )
    seen: list[tuple[str, str, int]] = []
    task = None
    try:
        start = (await reader.snapshot()).revision
        task = asyncio.create_task(_follow(reader, start, seen))
        feed.start()
        await writer.publish(rec("a"), ttl_s=20)
        await writer.publish(rec("b"), ttl_s=20)
        await _until(lambda: len(seen) == 2 and len(feed.records) == 2)
        member.stop()
        with pytest.raises(RegistryUnavailable):
            await writer.publish(rec("c"), ttl_s=20)
        await _until(lambda: bool(statuses) and not statuses[-1][1].up)
        assert {k.cluster for k in statuses[-1][0]} == {"a", "b"}, "last snapshot kept"
        assert statuses[-1][1].stale_since is not None
        cluster.restart(member)
        await writer.publish(rec("c"), ttl_s=20)
        await writer.withdraw(ServiceKey("shop", "web", "a"))
        await _until(lambda: len(seen) == 4)
        await _until(lambda: statuses[-1][1].up and {k.cluster for k in feed.records} == {"b", "c"})
        assert [(k, c) for k, c, _ in seen] == [
            ("put", "a"),
            ("put", "b"),
            ("put", "c"),
            ("delete", "a"),
        ]
        revisions = [r for *_, r in seen]
        assert revisions == sorted(set(revisions)), "no change seen twice"
    finally:
        if task is not None:
            task.cancel()
        await feed.stop()
        await feed.registry.close()
        await writer.close()
        await reader.close()
        cluster.stop()


async def test_a_large_snapshot_is_decoded_whole_off_the_event_loop(
    etcd_endpoints: list[str],
) -> None:
    root = f"big-{time.monotonic_ns()}/"
    reg = EtcdRegistry(etcd_endpoints, root=root)
    records = [rec(f"c{i:03d}") for i in range(DECODE_INLINE_BYTES // 500)]
    try:
        for r in records:
            await reg.put_raw(r.key.path(), r.to_json().encode())
        await reg.put_raw("portway/v1/services/shop/web/broken", b"{not json")
        loop_thread = threading.get_ident()
        decoded_in: list[int] = []
        original = reg._decode_page

        def spy(data: bytes) -> Any:
            decoded_in.append(threading.get_ident())
            assert len(data) > DECODE_INLINE_BYTES
            return original(data)

        reg._decode_page = spy  # type: ignore[method-assign]
        snap = await reg.snapshot()
        assert snap.records == {r.key: r for r in records}
        assert snap.revision > 0
        assert decoded_in and decoded_in[0] != loop_thread
    finally:
        await reg.close()


async def test_a_snapshot_is_read_in_pages_at_the_revision_of_the_first(
    etcd_endpoints: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write between two pages is not in the snapshot (the watch from its revision
    brings it), as with one range: every page reads the first page's revision."""
    monkeypatch.setattr(etcd, "SNAPSHOT_PAGE_KEYS", 3)
    reg = EtcdRegistry(etcd_endpoints, root=root())
    records = [rec(f"c{i}") for i in range(7)]
    late = rec("c3a")  # sorts into the second page (c3, c3a, c4)
    try:
        for r in records:
            await reg.put_raw(r.key.path(), r.to_json().encode())
        pages: list[dict[str, Any]] = []
        call = reg.client.call

        async def paging(path: str, body: dict[str, Any], *, raw: bool = False) -> Any:
            if path == "/v3/kv/range" and raw:
                pages.append(dict(body))
                if len(pages) == 2:
                    await reg.put_raw(late.key.path(), late.to_json().encode())
            return await call(path, body, raw=raw)

        reg.client.call = paging  # type: ignore[method-assign]
        snap = await reg.snapshot()
        assert snap.records == {r.key: r for r in records}
        assert len(pages) == 3 and all(p["limit"] == 3 for p in pages)
        assert "revision" not in pages[0]
        assert pages[1]["revision"] == pages[2]["revision"] == str(snap.revision)
        items: list[Change | Snapshot] = []
        async with asyncio.timeout(5):
            async for item in reg.watch(snap.revision):
                items.append(item)
                break
        assert isinstance(items[0], Change) and items[0].record == late
    finally:
        await reg.close()


async def test_a_snapshot_whose_revision_is_compacted_between_pages_is_read_again(
    etcd_endpoints: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(etcd, "SNAPSHOT_PAGE_KEYS", 2)
    reg = EtcdRegistry(etcd_endpoints, root=root())
    records = [rec(f"c{i}") for i in range(5)]
    try:
        for r in records:
            await reg.put_raw(r.key.path(), r.to_json().encode())
        calls = 0
        call = reg.client.call

        async def compacting(path: str, body: dict[str, Any], *, raw: bool = False) -> Any:
            nonlocal calls
            if path == "/v3/kv/range" and raw:
                calls += 1
                if calls == 2:  # a write and a compaction past the first page's revision
                    await reg.put_raw(records[0].key.path(), records[0].to_json().encode())
                    now = (await call("/v3/kv/range", {"key": "AA=="}))["header"]["revision"]
                    await call("/v3/kv/compaction", {"revision": now})
            return await call(path, body, raw=raw)

        reg.client.call = compacting  # type: ignore[method-assign]
        snap = await reg.snapshot()
        assert snap.records == {r.key: r for r in records}
        assert calls == 2 + 3  # two pages of the first try, then three
    finally:
        await reg.close()
