"""Following the registry: only a config with a backend fed by it follows one."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from gateway.config.loader import load_config_text
from gateway.runtime.registry_follower import RegistryFollower, needs_registry
from gateway.runtime.reload import Reloader
from portway.model import Node, ServicePort, ServiceRecord
from portway.registry.files import FilesRegistry

STATIC = """\
version: 1
routes:
  - name: r
    rules: [{backendRefs: [{name: api}]}]
backends:
  - name: api
    endpoints: [{address: 127.0.0.1, port: 9}]
"""
WITH_SERVICE = STATIC.replace(
    "endpoints: [{address: 127.0.0.1, port: 9}]",
    "service: {namespace: shop, name: api, port: http}",
)


def test_needs_registry_only_when_a_backend_names_a_service() -> None:
    assert not needs_registry(load_config_text(STATIC))
    assert needs_registry(load_config_text(WITH_SERVICE))


async def test_a_config_of_static_endpoints_opens_no_registry(tmp_path: Path) -> None:
    follower = RegistryFollower(Reloader(tmp_path / "gw.yaml", lambda table, active: None))
    await follower.start(load_config_text(STATIC))
    assert follower.feed is None
    await follower.close()


async def test_a_config_fed_by_the_registry_follows_it_into_the_reloader(tmp_path: Path) -> None:
    record = ServiceRecord(
        cluster="a",
        namespace="shop",
        service="api",
        ports=(ServicePort("http", 80, 30080),),
        nodes=(Node("n1", "127.0.0.11"),),
    )
    writer = FilesRegistry(tmp_path / "registry")
    await writer.publish(record, None)
    text = WITH_SERVICE + f"registry: {{type: files, path: {tmp_path / 'registry'}}}\n"
    (tmp_path / "gw.yaml").write_text(text)
    reloader = Reloader(tmp_path / "gw.yaml", lambda table, active: None)
    await reloader.load_initial()
    assert record.key not in reloader.records
    pump = asyncio.create_task(reloader.run())
    follower = RegistryFollower(reloader)
    await follower.start(load_config_text(text))
    try:
        async with asyncio.timeout(10):
            while record.key not in reloader.records:
                await asyncio.sleep(0.02)
        assert reloader.records[record.key] == record
    finally:
        await follower.close()
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        await writer.close()
