"""KindWatcher against the emulated apiserver: list, watch, bookmarks, 410, reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from conftest import NODES, eventually, node
from kube_emulator import Apiserver, KubeEmulator

from controller.watch import NODES as NODES_KIND
from controller.watch import Connectivity, KindWatcher, ObjectEvent, Reset, WatchItem, WatchTiming

TIMING = WatchTiming(
    watch_timeout_s=30, read_timeout_s=60, backoff_initial_s=0.05, backoff_max_s=0.3
)


class Seen:
    """What a watcher delivered, collected on the loop."""

    def __init__(self) -> None:
        self.items: list[WatchItem] = []

    def of(self, cls: type) -> list[WatchItem]:
        return [i for i in self.items if isinstance(i, cls)]

    def names(self, item: Reset) -> set[str]:
        return {o["metadata"]["name"] for o in item.objects}


@pytest.fixture
async def watching(apiserver: Apiserver) -> AsyncIterator[tuple[KindWatcher, Seen]]:
    seen = Seen()
    loop = asyncio.get_running_loop()
    watcher = KindWatcher(
        apiserver.api_client(),
        NODES_KIND,
        lambda item: loop.call_soon_threadsafe(seen.items.append, item),
        TIMING,
    )
    watcher.start()
    yield watcher, seen
    watcher.stop()
    await asyncio.to_thread(watcher.join)
    assert not watcher.alive


async def test_lists_then_streams_changes(emulator: KubeEmulator, watching) -> None:
    watcher, seen = watching
    await eventually(lambda: emulator.watches_served == 1)
    emulator.put(NODES, node("n1", "127.0.1.1"))
    emulator.put(NODES, node("n2", "127.0.1.2"))
    emulator.remove(NODES, None, "n1")
    await eventually(lambda: len(seen.of(ObjectEvent)) == 3)
    assert [(e.type, e.object["metadata"]["name"]) for e in seen.of(ObjectEvent)] == [
        ("ADDED", "n1"),
        ("ADDED", "n2"),
        ("DELETED", "n1"),
    ]
    assert len(seen.of(Reset)) == 1
    assert watcher.resource_version == str(emulator.revision)


async def test_bookmarks_move_the_resume_version(emulator: KubeEmulator, watching) -> None:
    watcher, seen = watching
    await eventually(lambda: emulator.watches_served == 1)
    emulator.put("v1/events", {"metadata": {"namespace": "x", "name": "unrelated"}})
    await eventually(lambda: watcher.resource_version == str(emulator.revision), 2.0)
    assert seen.of(ObjectEvent) == []


async def test_410_in_an_open_watch_relists(emulator: KubeEmulator, watching) -> None:
    emulator.put(NODES, node("n1", "127.0.1.1"))
    _, seen = watching
    await eventually(lambda: emulator.watches_served == 1)
    emulator.expire_watches()
    await eventually(lambda: len(seen.of(Reset)) == 2, message="relisted after 410")
    await eventually(lambda: emulator.watches_served == 2)
    emulator.put(NODES, node("n2", "127.0.1.2"))
    await eventually(
        lambda: any(e.object["metadata"]["name"] == "n2" for e in seen.of(ObjectEvent))
    )


async def test_reconnect_resumes_without_relisting(
    emulator: KubeEmulator, apiserver: Apiserver, watching
) -> None:
    emulator.put(NODES, node("n1", "127.0.1.1"))
    _, seen = watching
    await eventually(lambda: emulator.watches_served == 1)
    await apiserver.down()
    await eventually(lambda: [c.up for c in seen.of(Connectivity)] == [True, False])
    emulator.put(NODES, node("n2", "127.0.1.2"))
    await apiserver.up()
    await eventually(
        lambda: any(e.object["metadata"]["name"] == "n2" for e in seen.of(ObjectEvent))
    )
    assert len(seen.of(Reset)) == 1, "resumed from the resourceVersion, no second list"
    assert [c.up for c in seen.of(Connectivity)] == [True, False, True]


async def test_resume_from_a_compacted_version_relists(
    emulator: KubeEmulator, apiserver: Apiserver, watching
) -> None:
    emulator.put(NODES, node("n1", "127.0.1.1"))
    _, seen = watching
    await eventually(lambda: emulator.watches_served == 1)
    await apiserver.down()
    await eventually(lambda: any(not c.up for c in seen.of(Connectivity)))
    emulator.remove(NODES, None, "n1")
    emulator.put(NODES, node("n2", "127.0.1.2"))
    emulator.compact()
    await apiserver.up()
    await eventually(lambda: len(seen.of(Reset)) == 2, message="410 on resume -> relist")
    assert seen.names(seen.of(Reset)[-1]) == {"n2"}, "the deletion is seen through the list"
