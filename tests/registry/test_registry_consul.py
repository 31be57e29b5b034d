"""Consul specifics against the emulator: blocking queries, session expiry, catalog mirror."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Any

import aiohttp
import pytest
from consul_emulator import ConsulEmulator
from hypothesis import given, settings
from hypothesis import strategies as st

from portway.model import Node, ServiceKey, ServicePort, ServiceRecord
from portway.registry.base import Change, ChangeKind, RegistryUnavailable, Snapshot
from portway.registry.consul import ConsulRegistry
from portway.registry.consul_listing import RememberedStates, diff, undo_of

pytestmark = pytest.mark.timeout(30)


def rec(cluster: str, nodes: int = 2) -> ServiceRecord:
    return ServiceRecord(
        cluster=cluster,
        namespace="shop",
        service="web",
        region="eu",
        ports=(ServicePort("http", 80, 30080),),
        nodes=tuple(Node(f"n{i}", f"10.0.0.{i + 1}", f"eu-1{'ab'[i % 2]}") for i in range(nodes)),
    )


def registry(addr: str, **kw: object) -> ConsulRegistry:
    return ConsulRegistry(addr, root=f"t-{uuid.uuid4().hex[:8]}/", min_ttl_s=1.0, **kw)  # type: ignore[arg-type]


async def test_emulated_blocking_query_returns_on_change_or_after_the_wait(
    consul_emulator_addr: str,
) -> None:
    base = f"http://{consul_emulator_addr}/v1/kv/bq-{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "?recurse") as resp:
            index = int(resp.headers["X-Consul-Index"])
        t0 = time.monotonic()
        async with http.get(f"{base}?recurse&index={index}&wait=300ms") as resp:
            assert int(resp.headers["X-Consul-Index"]) == index
        assert 0.25 < time.monotonic() - t0 < 2
        waiter = asyncio.create_task(http.get(f"{base}?recurse&index={index}&wait=10s"))
        await asyncio.sleep(0.1)
        t1 = time.monotonic()
        async with http.put(base + "/k", data=b"v") as resp:
            assert await resp.json() is True
        resp = await waiter
        assert int(resp.headers["X-Consul-Index"]) > index
        assert time.monotonic() - t1 < 1
        resp.release()


async def test_session_expiry_deletes_the_key_and_a_watch_sees_it(
    consul_emulator_addr: str,
) -> None:
    reg = registry(consul_emulator_addr)
    r = rec("a")
    lease = await reg.publish(r, ttl_s=1)
    start = await reg.snapshot()
    await reg.abandon(r.key)
    t0 = time.monotonic()
    async with asyncio.timeout(5):
        async for item in reg.watch(start.revision):
            assert isinstance(item, Change)
            assert item.key == r.key and item.record is None
            break
    assert 0.5 < time.monotonic() - t0 < 2.5
    assert lease.renewing is False
    await reg.close()


async def test_catalog_mirror_registers_one_instance_per_node_with_tags(
    consul_emulator: ConsulEmulator,
) -> None:
    def mirrored_of_a() -> list[dict[str, Any]]:
        return [s for s in consul_emulator.state.services.values() if "cluster=a" in s["Tags"]]

    reg = registry(consul_emulator.address, mirror_catalog=True)
    await reg.publish(rec("a", nodes=2), ttl_s=10)
    mirrored = mirrored_of_a()
    assert sorted(s["Address"] for s in mirrored) == ["10.0.0.1", "10.0.0.2"]
    assert all(s["Port"] == 30080 and s["Name"] == "shop-web" for s in mirrored)
    assert {t for s in mirrored for t in s["Tags"] if t.startswith("zone=")} == {
        "zone=eu-1a",
        "zone=eu-1b",
    }
    await reg.publish(rec("a", nodes=1), ttl_s=10)
    assert len(mirrored_of_a()) == 1
    await reg.withdraw(rec("a").key)
    assert not mirrored_of_a()
    await reg.close()


async def test_an_unreachable_agent_raises_registry_unavailable(
    consul_emulator: ConsulEmulator,
) -> None:
    reg = registry(consul_emulator.address)
    consul_emulator.set_reachable(False)
    try:
        with pytest.raises(RegistryUnavailable):
            await reg.snapshot()
        with pytest.raises(RegistryUnavailable):
            async for _ in reg.watch(0):
                pass
    finally:
        consul_emulator.set_reachable(True)
        await reg.close()


async def test_a_watch_from_a_revision_it_never_saw_starts_with_a_snapshot(
    consul_emulator_addr: str,
) -> None:
    writer, reader = registry(consul_emulator_addr), None
    await writer.publish(rec("a"), ttl_s=10)
    reader = ConsulRegistry(consul_emulator_addr, root=writer.root, min_ttl_s=1.0)
    async with asyncio.timeout(5):
        async for item in reader.watch(1):
            assert isinstance(item, Snapshot)
            assert [k.cluster for k in item.records] == ["a"]
            break
    await writer.close()
    await reader.close()


async def test_a_blocking_query_decodes_only_the_keys_whose_modify_index_moved(
    consul_emulator_addr: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import portway.registry.consul_listing as consul_backend

    reg = registry(consul_emulator_addr)
    records = [rec(f"c{i:03d}", nodes=25) for i in range(300)]
    for r in records:
        await reg.put_raw(r.key.path(), r.to_json().encode())
    decoded: list[str] = []
    threads: list[int] = []
    original_decode, original_fold = consul_backend.decode_record, reg._fold

    def counting(key: str, value: bytes, *, backend: str) -> ServiceRecord | None:
        decoded.append(key)
        return original_decode(key, value, backend=backend)

    def fold(body: bytes, before: Any, latest: Any) -> Any:
        threads.append(threading.get_ident())
        return original_fold(body, before, latest)

    monkeypatch.setattr(consul_backend, "decode_record", counting)
    reg._fold = fold  # type: ignore[method-assign]
    try:
        snap = await reg.snapshot()
        assert snap.records == {r.key: r for r in records}
        assert len(decoded) == 300 and threads[-1] != threading.get_ident()  # a big answer
        decoded.clear()
        changed = rec("c007", nodes=24)
        await reg.put_raw(changed.key.path(), changed.to_json().encode())
        async with asyncio.timeout(5):
            async for item in reg.watch(snap.revision):
                assert isinstance(item, Change) and item.record == changed
                break
        assert decoded == [changed.key.path()]
    finally:
        await reg.close()


KEYS = [ServiceKey("shop", s, c) for s in ("web", "api") for c in ("a", "b", "c")]
VERSIONS = [rec("a"), rec("a", nodes=1), rec("b"), rec("c", nodes=3)]


@settings(max_examples=200, deadline=None)
@given(
    listings=st.lists(
        st.dictionaries(
            st.sampled_from(KEYS),
            st.tuples(st.sampled_from(range(len(VERSIONS))), st.booleans()),
            max_size=6,
        ),
        min_size=1,
        max_size=12,
    ),
    limit=st.integers(0, 5),
)
def test_remembered_states_give_back_every_listing_within_the_limit(
    listings: list[dict[ServiceKey, tuple[int, bool]]], limit: int
) -> None:
    """Listings as `fold` gives them: an entry that did not move keeps its record object; one
    that moved (`fresh`) is decoded anew, equal to before or not."""
    states = RememberedStates(limit)
    seen: list[dict[ServiceKey, ServiceRecord]] = []
    for revision, listing in enumerate(listings, start=10):
        before = states.state
        state = {
            k: dataclasses.replace(VERSIONS[v])
            if fresh or before.get(k) != VERSIONS[v]
            else before[k]
            for k, (v, fresh) in listing.items()
        }
        states.remember(revision, state, undo_of(before, state), before)
        seen.append(state)
    last = 10 + len(listings) - 1
    for revision, state in enumerate(seen, start=10):
        got = states.get(revision)
        if last - revision <= limit:
            assert got == state
        else:
            assert got is None
    assert states.get(last) is seen[-1]


def test_remembered_states_forget_the_past_when_built_on_another_listing() -> None:
    states = RememberedStates(4)
    one = {KEYS[0]: VERSIONS[0]}
    two = {KEYS[1]: VERSIONS[1]}
    states.remember(1, one, undo_of({}, one), {})
    states.remember(2, two, undo_of(one, two), one)
    assert states.get(1) == one
    stale_base = {KEYS[2]: VERSIONS[2]}  # a listing folded against a state no longer newest
    states.remember(3, one, undo_of(stale_base, one), stale_base)
    assert states.get(3) is one and states.get(2) is None and states.get(1) is None
    states.remember(2, two, undo_of(one, two), one)  # the index went back
    assert states.get(2) is two and states.get(3) is None


def test_a_listing_diff_yields_deletes_then_puts_each_by_key_path() -> None:
    a, b, c = rec("a"), rec("b"), rec("c")
    b2 = rec("b", nodes=1)
    old = {rec("f").key: rec("f"), c.key: c, b.key: b, a.key: a}
    new = {c.key: c, b.key: b2, rec("e").key: rec("e"), rec("d").key: rec("d")}
    assert diff(old, new, 7) == [
        Change(ChangeKind.DELETE, a.key, 7),
        Change(ChangeKind.DELETE, rec("f").key, 7),
        Change(ChangeKind.PUT, b.key, 7, b2),
        Change(ChangeKind.PUT, rec("d").key, 7, rec("d")),
        Change(ChangeKind.PUT, rec("e").key, 7, rec("e")),
    ]
