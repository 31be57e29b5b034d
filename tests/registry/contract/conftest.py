"""Harnesses that give the contract suite the same view of every backend.

A harness makes sessions (independent writers/readers) on one shared store
that is fresh for each test, and can plant raw bytes the way a foreign writer
would. `exact_history` says whether the backend reports every write (a log:
memory, etcd) or may coalesce writes of one key (observed state: files,
Consul blocking queries).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness import Harness

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


async def _build(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    root = f"test-{uuid.uuid4().hex[:10]}/"
    if name == "memory":
        store = MemoryStore()

        async def put_memory(key: str, data: bytes) -> None:
            store.put_raw(key, data.decode())

        return Harness(
            name, lambda owner: MemoryRegistry(store, owner=owner), put_memory, exact_history=True
        )
    if name == "files":
        directory = tmp_path / "registry"

        async def put_file(key: str, data: bytes) -> None:
            (directory / (key.replace("/", "_") + ".json")).write_bytes(data)

        return Harness(
            name, lambda owner: FilesRegistry(directory, owner=owner), put_file, exact_history=False
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

        return Harness(
            name,
            lambda owner: EtcdRegistry(endpoints, root=root, owner=owner),
            put_etcd,
            exact_history=True,
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

        # a real agent refuses session TTLs under 10 s
        floor = 10.0 if name == "consul-real" else 0.0
        return Harness(name, make_consul, put_consul, exact_history=False, ttl_floor_s=floor)
    raise AssertionError(name)
