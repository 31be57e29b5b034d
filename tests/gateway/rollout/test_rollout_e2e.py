"""Progressive rollouts through a real `portway gateway` process and real loopback upstreams.

Two aiohttp servers stand for two clusters: `stable` (cluster eu-a) and
`canary` (cluster eu-b). The gateway keeps the rollout state in a files
registry under the test's directory; traffic runs all along while the
test watches `GET /rollouts`, `/metrics` and which side answered. Pauses
are 0.3 s so a whole rollout takes about a second.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One cluster's service: answers its name, or 500 while `failing`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.failing = False
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if self.failing:
            return web.Response(status=500, text=f"{self.name} broken")
        return web.Response(text=self.name)

    async def start(self) -> Cluster:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def config_text(
    port: int, admin: int, stable: Cluster, canary: Cluster, registry: Path, steps: str
) -> str:
    return f"""\
version: 1
listeners:
  - {{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}
routes:
  - name: shop
    rules:
      - name: api
        backendRefs: [{{name: api-eu-a}}]
        canary:
          backend: api-eu-b
          rollout: {{steps: {steps}, maxErrorRate: 5, minRequests: 5}}
backends:
  - name: api-eu-a
    endpoints: [{{address: 127.0.0.1, port: {stable.port}, cluster: eu-a, region: eu}}]
  - name: api-eu-b
    endpoints: [{{address: 127.0.0.1, port: {canary.port}, cluster: eu-b, region: eu}}]
registry: {{type: files, path: {registry}}}
admin: {{address: 127.0.0.1, port: {admin}}}
"""


FAST = "[{percent: 25, pause: 300ms}, {percent: 50, pause: 300ms}, {percent: 75, pause: 300ms}]"
SLOW = "[{percent: 25, pause: 1h}, {percent: 50, pause: 1h}]"


@dataclass
class Gateway:
    tmp: Path
    workers: int = 1
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def write(self, stable: Cluster, canary: Cluster, steps: str) -> Gateway:
        registry = self.tmp / "registry"
        text = config_text(self.port, self.admin_port, stable, canary, registry, steps)
        (self.tmp / "gw.yaml").write_text(text)
        return self

    async def start(self) -> Gateway:
        args = [sys.executable, "-m", "portway", "gateway", "--config", str(self.tmp / "gw.yaml")]
        args += ["--workers", str(self.workers), "--drain-timeout", "1"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with (self.tmp / "gateway.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=ROOT, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                status, _ = await self.get("/readyz")
                if status == 200:
                    return self
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("gateway not ready:\n" + self.log())

    def log(self) -> str:
        return (self.tmp / "gateway.log").read_text()

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.get(self.admin + path) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body

    async def rollout(self) -> dict[str, Any]:
        _, body = await self.get("/rollouts")
        (only,) = body["rollouts"]
        return dict(only)

    async def until(self, phase: str, timeout_s: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            view = await self.rollout()
            if view["phase"] == phase and view["applied_weight"] == view["weight"]:
                return view
            await asyncio.sleep(0.05)
        raise AssertionError(f"never {phase}: {await self.rollout()}\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Traffic:
    """Clients sending requests all along; `answers` is (monotonic time, side, status)."""

    def __init__(self, port: int, concurrency: int = 4) -> None:
        self.url = f"http://127.0.0.1:{port}/api"
        self.answers: list[tuple[float, str, int]] = []
        self._tasks = [asyncio.create_task(self._client()) for _ in range(concurrency)]

    async def _client(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(self.url) as r:
                        text = await r.text()
                        self.answers.append((time.monotonic(), text.split()[0], r.status))
                except aiohttp.ClientError:
                    await asyncio.sleep(0.01)

    def since(self, t: float) -> list[tuple[float, str, int]]:
        return [a for a in self.answers if a[0] >= t]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def clusters() -> AsyncIterator[tuple[Cluster, Cluster]]:
    stable, canary = await Cluster("stable").start(), await Cluster("canary").start()
    yield stable, canary
    await stable.stop()
    await canary.stop()


@pytest.fixture
def gateways(tmp_path: Path) -> Any:
    started: list[Gateway] = []

    def make(workers: int = 1) -> Gateway:
        gw = Gateway(tmp_path, workers)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


async def test_a_healthy_canary_in_another_cluster_is_promoted_step_by_step(
    clusters: tuple[Cluster, Cluster], gateways: Any
) -> None:
    stable, canary = clusters
    gw = await gateways().write(stable, canary, FAST).start()
    traffic = Traffic(gw.port)
    weights: list[float] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        view = await gw.rollout()
        if not weights or view["weight"] != weights[-1]:
            weights.append(view["weight"])
        if view["phase"] == "promoted" and view["applied_weight"] == 100.0:
            break
        await asyncio.sleep(0.02)
    promoted_at = time.monotonic()
    await asyncio.sleep(0.3)
    await traffic.stop()
    assert weights == [25.0, 50.0, 75.0, 100.0] or weights == [0.0, 25.0, 50.0, 75.0, 100.0]
    after = traffic.since(promoted_at + 0.05)
    assert after and {side for _, side, _ in after} == {"canary"}
    assert all(status == 200 for _, _, status in traffic.answers)
    _, metrics = await gw.get("/metrics")
    assert 'portway_rollout_weight{backend="api-eu-b",rollout="shop/api"} 100.0' in metrics
    assert 'portway_rollout_weight{backend="api-eu-a",rollout="shop/api"} 0.0' in metrics
    assert 'portway_rollout_state{rollout="shop/api",state="promoted"} 1.0' in metrics
    steps = [
        json.loads(line)
        for line in gw.log().splitlines()
        if line.startswith("{") and '"rollout"' in line and '"weight"' in line
    ]
    assert [(s["phase"], s["weight"]) for s in steps] == [
        ("progressing", 25.0),
        ("progressing", 50.0),
        ("progressing", 75.0),
        ("promoted", 100.0),
    ]  # each transition logged once


async def test_a_canary_answering_500s_is_rolled_back_and_traffic_returns_to_stable(
    clusters: tuple[Cluster, Cluster], gateways: Any
) -> None:
    stable, canary = clusters
    canary.failing = True
    gw = await gateways(workers=2).write(stable, canary, FAST).start()
    traffic = Traffic(gw.port)
    view = await gw.until("rolled_back")
    back_at = time.monotonic()
    await asyncio.sleep(1.0)
    await traffic.stop()
    assert (view["weight"], view["weights"]) == (0.0, {"api-eu-a": 100.0, "api-eu-b": 0.0})
    assert view["reason"].startswith("rolled back: error rate 100.0% > 5%")
    assert view["step"] == 0  # it never left the first step
    after = traffic.since(back_at + 0.5)  # each worker follows within a poll (0.1 s here)
    assert after and {(side, status) for _, side, status in after} == {("stable", 200)}
    failed = [a for a in traffic.answers if a[2] != 200]
    assert 0 < len(failed) < len(traffic.answers) / 2


async def test_portway_rollout_abort_resume_and_a_restart_that_keeps_the_step(
    clusters: tuple[Cluster, Cluster], gateways: Any
) -> None:
    stable, canary = clusters
    gw = await gateways().write(stable, canary, SLOW).start()
    await gw.until("progressing")
    traffic = Traffic(gw.port)

    async def portway(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "portway",
            "rollout",
            *args,
            "--admin",
            gw.admin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=ROOT,
        )
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    code, out = await portway("status")
    assert code == 0 and "shop/api" in out and "progressing" in out and "25%" in out
    code, out = await portway("abort", "shop")
    assert code == 0 and "rolled_back" in out and "abort by operator" in out
    await gw.until("rolled_back")
    aborted_at = time.monotonic()
    await asyncio.sleep(0.3)
    after = traffic.since(aborted_at)
    assert after and {side for _, side, _ in after} == {"stable"}
    code, out = await portway("pause", "shop/api")
    assert code == 1 and "cannot pause a rollout that is rolled_back" in out
    code, out = await portway("abort", "nope")
    assert code == 1 and "no rollout named nope" in out

    code, out = await portway("resume", "shop", "--json")
    assert code == 0 and json.loads(out)["phase"] == "progressing"
    await gw.until("progressing")
    gw.stop()
    restarted = await Gateway(gw.tmp, port=gw.port, admin_port=gw.admin_port).start()
    try:
        view = await restarted.rollout()  # its first table: the stored step, no driver round yet
        assert (view["phase"], view["step"], view["applied_weight"]) == ("progressing", 0, 25.0)
    finally:
        await traffic.stop()
        restarted.stop()
