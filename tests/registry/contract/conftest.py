"""Harnesses that give the contract suite the same view of every backend.

A harness makes sessions (independent writers/readers) on one shared store
that is fresh for each test, and can plant raw bytes the way a foreign writer
would. `exact_history` says whether the backend reports every write (a log:
memory, etcd) or may coalesce writes of one key (observed state: files,
Consul blocking queries). `partition()` makes a reader that can be cut off
from the store while the writers go on: files, a reader of a link to the
directory, the link removed; etcd and Consul, a reader through a TCP `Relay`
that is cut; memory, the whole store made unavailable.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from harness import Harness, Partition
from relay import Relay

from portway.registry.base import Registry
from portway.registry.files import FilesRegistry
from portway.registry.memory import MemoryRegistry, MemoryStore

BACKENDS = [
    "memory",
    "files",
    "etcd",
    "consul-emulator",
    pytest.param("consul-real", marks=pytest.mark.e2e),
]


@pytest.fixture(params=BACKENDS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    name: str = request.param
    h = await _build(name, request, tmp_path)
    try:
        yield h
    finally:
        for reg in h.sessions:
            await reg.close()
        for relay in h.relays:
            await relay.cut()


async def relayed(
    host: str, port: int, make: Callable[[Relay], Registry], relays: list[Relay]
) -> Partition:
    """A reader reaching the server at host:port through a new `Relay`."""
    relay = Relay(host, port)
    await relay.heal()
    relays.append(relay)
    return Partition(make(relay), relay.cut, relay.heal)


async def _build(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    root = f"test-{uuid.uuid4().hex[:10]}/"
    relays: list[Relay] = []
    if name == "memory":
        store = MemoryStore()

        async def put_memory(key: str, data: bytes) -> None:
            store.put_raw(key, data.decode())

        async def partition_memory() -> Partition:
            async def cut() -> None:
                store.set_available(False)

            async def heal() -> None:
                store.set_available(True)

            return Partition(MemoryRegistry(store), cut, heal)

        return Harness(
            name,
            lambda owner: MemoryRegistry(store, owner=owner),
            put_memory,
            exact_history=True,
            partition=partition_memory,
        )
    if name == "files":
        directory = tmp_path / "registry"

        async def put_file(key: str, data: bytes) -> None:
            (directory / (key.replace("/", "_") + ".json")).write_bytes(data)

        async def partition_files() -> Partition:
            link = tmp_path / "registry-link"
            directory.mkdir(exist_ok=True)
            link.symlink_to(directory, target_is_directory=True)

            async def cut() -> None:
                link.unlink()

            async def heal() -> None:
                link.symlink_to(directory, target_is_directory=True)

            return Partition(FilesRegistry(link), cut, heal)

        return Harness(
            name,
            lambda owner: FilesRegistry(directory, owner=owner),
            put_file,
            exact_history=False,
            partition=partition_files,
        )
    if name == "etcd":
        from portway.registry.etcd import EtcdRegistry

        endpoints: list[str] = request.getfixturevalue("etcd_endpoints")

        async def put_etcd(key: str, data: bytes) -> None:
            reg = EtcdRegistry(endpoints, root=root)
            try:
                await reg.put_raw(key, data)
            finally:
                await reg.close()

        def relayed_etcd(relay: Relay) -> Registry:
            return EtcdRegistry([f"http://{relay.address}"], root=root)

        host, port = endpoints[0].removeprefix("http://").rsplit(":", 1)
        return Harness(
            name,
            lambda owner: EtcdRegistry(endpoints, root=root, owner=owner),
            put_etcd,
            exact_history=True,
            partition=lambda: relayed(host, int(port), relayed_etcd, relays),
            relays=relays,
        )
    if name in ("consul-emulator", "consul-real"):
        from portway.registry.consul import ConsulRegistry

        if name == "consul-real":
            addr = os.environ.get("CONSUL_HTTP_ADDR", "")
            if not addr:
                pytest.skip("CONSUL_HTTP_ADDR not set: no real Consul agent")
        else:
            addr = request.getfixturevalue("consul_emulator_addr")

        def make_consul(owner: str = "") -> Any:
            floor_s = 10.0 if name == "consul-real" else 1.0
            return ConsulRegistry(addr, root=root, owner=owner, min_ttl_s=floor_s)

        async def put_consul(key: str, data: bytes) -> None:
            reg = make_consul()
            try:
                await reg.put_raw(key, data)
            finally:
                await reg.close()

        def relayed_consul(relay: Relay) -> Registry:
            return ConsulRegistry(relay.address, root=root, min_ttl_s=1.0)

        # a real agent refuses session TTLs under 10 s
        floor = 10.0 if name == "consul-real" else 0.0
        host, port = addr.removeprefix("http://").rsplit(":", 1)
        return Harness(
            name,
            make_consul,
            put_consul,
            exact_history=False,
            partition=lambda: relayed(host, int(port), relayed_consul, relays),
            relays=relays,
            ttl_floor_s=floor,
        )
    raise AssertionError(name)
