"""`portway gateway --workers 2`: the active checks run once, and both workers act on them.

A real supervisor and its two worker processes on loopback, one backend of
two aiohttp upstreams with a 200 ms HTTP health check. Bounded: ~10 s, a
hundred requests.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.gateway.conftest import ProbedUpstream, free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
ROOT = Path(__file__).resolve().parents[3]
INTERVAL_S = 0.2


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[ProbedUpstream, ProbedUpstream]]:
    made = (ProbedUpstream("probed"), ProbedUpstream("steady"))
    for node in made:
        await node.start()
    yield made
    for node in made:
        await node.stop()


def config_text(port: int, admin: int, nodes: tuple[ProbedUpstream, ProbedUpstream]) -> str:
    endpoints = "".join(
        f"      - {{address: 127.0.0.1, port: {n.port}, cluster: c{i}}}\n"
        for i, n in enumerate(nodes)
    )
    return f"""\
version: 1
listeners:
  - {{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}
routes:
  - name: app
    rules:
      - backendRefs: [{{name: app}}]
backends:
  - name: app
    endpoints:
{endpoints}    healthCheck: {{path: /healthz, interval: {int(INTERVAL_S * 1000)}ms}}
admin: {{address: 127.0.0.1, port: {admin}}}
"""


async def eventually(check: Callable[[], Any], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def answers(port: int, n: int) -> list[str]:
    """`n` GETs, each on a connection of its own (SO_REUSEPORT spreads them over the workers)."""
    out = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as s:
        for _ in range(n):
            async with s.get(f"http://127.0.0.1:{port}/x") as r:
                out.append(await r.text())
    return out


async def test_two_workers_probe_once_and_both_take_the_verdicts(
    nodes: tuple[ProbedUpstream, ProbedUpstream], tmp_path: Path
) -> None:
    probed, _ = nodes
    port, admin = free_ports(2)
    config = tmp_path / "gateway.yaml"
    config.write_text(config_text(port, admin, nodes))
    log_path = tmp_path / "gateway.log"
    args = [sys.executable, "-m", "portway", "gateway", "--config", str(config), "--workers", "2"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            args, stdout=log, stderr=log, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
    try:

        async def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                async with (
                    aiohttp.ClientSession() as s,
                    s.get(f"http://127.0.0.1:{admin}/readyz") as r,
                ):
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        async def probing() -> bool:
            return probed.probes > 0

        await eventually(ready, 30)
        await eventually(probing)
        before = probed.probes
        await asyncio.sleep(10 * INTERVAL_S)
        probes = probed.probes - before
        assert 7 <= probes <= 13, probes  # one prober's 10 (10 % jitter), not two workers' 20

        probed.health = 503

        async def out() -> bool:
            return "probed" not in await answers(port, 20)

        await eventually(out)
        assert "probed" not in await answers(port, 40)  # on both workers

        probed.health = 200

        async def back() -> bool:
            return "probed" in await answers(port, 20)

        await eventually(back)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
    changes = [x for x in lines if x.get("msg") == "endpoint health changed"]
    assert [x.get("to") for x in changes] == ["unhealthy", "healthy"], changes  # logged once
