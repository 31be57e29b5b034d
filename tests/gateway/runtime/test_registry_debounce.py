"""registry.debounce holds a new record back that long before the table changes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from portway.model import Node, ServicePort, ServiceRecord
from portway.registry.files import FilesRegistry

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def record(cluster: str, address: str) -> ServiceRecord:
    return ServiceRecord(
        cluster=cluster,
        namespace="shop",
        service="web",
        ports=(ServicePort("http", 80, 30080),),
        nodes=(Node("n1", address),),
    )


async def seconds_until_seen(tmp_path: Path, debounce: str) -> float:
    """Start a gateway with `debounce`, publish a second cluster, time until it is routed to."""
    registry_dir = tmp_path / f"registry-{debounce}"
    writer = FilesRegistry(registry_dir)
    await writer.publish(record("a", "127.0.0.11"), None)
    port, admin = free_port(), free_port()
    config = tmp_path / f"gw-{debounce}.yaml"
    config.write_text(
        f"""\
version: 1
listeners: [{{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}]
registry: {{type: files, path: '{registry_dir}', debounce: {debounce}}}
routes: [{{name: r, rules: [{{backendRefs: [{{name: web}}]}}]}}]
backends: [{{name: web, service: {{namespace: shop, name: web, port: http}}}}]
admin: {{address: 127.0.0.1, port: {admin}}}
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "portway", "gateway", "--config", str(config), "--workers", "1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def clusters() -> set[str]:
                try:
                    async with session.get(f"http://127.0.0.1:{admin}/endpoints") as resp:
                        body = await resp.json()
                except aiohttp.ClientError:
                    return set()
                return {ep["cluster"] for ep in body["backends"].get("web", [])}

            deadline = time.monotonic() + 20
            while await clusters() != {"a"}:
                assert proc.poll() is None and time.monotonic() < deadline
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the first sync is behind us
            started = time.monotonic()
            await writer.publish(record("b", "127.0.0.12"), None)
            while await clusters() != {"a", "b"}:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            return time.monotonic() - started
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 15)
        await writer.close()


async def test_a_long_debounce_holds_a_new_record_back(tmp_path: Path) -> None:
    assert await seconds_until_seen(tmp_path, "1500ms") >= 1.2
    assert await seconds_until_seen(tmp_path, "20ms") < 1.0
