"""The dashboard in headless chromium against a real two-worker gateway and real upstreams.

The page must load with no console error, show what is configured (routes,
backends with their clusters), and its numbers must follow the traffic sent
through the gateway: requests counted, requests per second up while traffic
flows and back to 0 after, the split over both clusters, a config reload
listed as it happens, and a cluster lost: its endpoint out of rotation, with
an event.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from chromium_cdp import Chromium, Page

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[3]

CONFIG = """\
version: 1
listeners:
  - {{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}
routes:
  - name: shop
    rules:
      - matches: [{{path: {{type: PathPrefix, value: /}}}}]
        backendRefs: [{{name: api}}]
{extra}backends:
  - name: api
    endpoints:
      - {{address: 127.0.0.1, port: {east}, cluster: east}}
      - {{address: 127.0.0.1, port: {west}, cluster: west}}
admin: {{address: 127.0.0.1, port: {admin}}}
"""
EXTRA_ROUTE = """\
  - name: checkout
    rules:
      - matches: [{path: {type: PathPrefix, value: /checkout}}]
        backendRefs: [{name: api}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_upstream(port: int) -> web.AppRunner:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


class GatewayProcess:
    def __init__(self, tmp: Path, ports: dict[str, int]) -> None:
        self.ports = ports
        self.config = tmp / "gateway.yaml"
        self.log = tmp / "gateway.log"
        self.write(extra="")
        self.proc: subprocess.Popen[bytes] | None = None
        self.upstreams: dict[str, web.AppRunner] = {}
        self.admin = f"http://127.0.0.1:{ports['admin']}"
        self.listener = f"http://127.0.0.1:{ports['port']}"

    def write(self, *, extra: str) -> None:
        self.config.write_text(CONFIG.format(extra=extra, **self.ports))

    async def start(self) -> None:
        args = [sys.executable, "-m", "portway", "gateway", "--config", str(self.config)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [*args, "--workers", "2", "--drain-timeout", "1"],
                stdout=log,
                stderr=log,
                cwd=ROOT,
                env=env,
            )
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    async with s.get(self.admin + "/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("gateway not ready: " + self.log.read_text())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    ports = {name: free_port() for name in ("port", "admin", "east", "west")}
    gw = GatewayProcess(tmp_path, ports)
    for cluster in ("east", "west"):
        gw.upstreams[cluster] = await start_upstream(ports[cluster])
    try:
        await gw.start()
        yield gw
    finally:
        gw.stop()
        for runner in gw.upstreams.values():
            await runner.cleanup()


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    browser = await Chromium.launch(tmp_path / "profile")
    try:
        yield await browser.new_page()
    finally:
        await browser.close()


async def send(url: str, n: int) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            async with s.get(url) as r:
                assert r.status == 200
                await r.read()


async def keep_sending(url: str, period_s: float = 0.05) -> None:
    """Requests until cancelled (answers not checked: an endpoint is down)."""
    async with aiohttp.ClientSession() as s:
        while True:
            async with s.get(url) as r:
                await r.read()
            await asyncio.sleep(period_s)


def number(id_: str) -> str:
    """JavaScript reading a number shown in the element `id_` (null while it shows none)."""
    return (
        f"(() => {{ const t = document.getElementById({id_!r}).textContent.replace(/,/g, '');"
        " const v = parseFloat(t); return Number.isNaN(v) ? null : v; })()"
    )


@pytest.mark.timeout(60)
async def test_dashboard_follows_traffic_and_reloads_without_console_errors(
    gateway: GatewayProcess, page: Page
) -> None:
    await page.open(gateway.admin + "/dashboard")
    await page.wait_for("document.getElementById('status').textContent === 'live'")
    await page.wait_for(number("kpi-requests") + " !== null")
    assert await page.evaluate(number("kpi-requests")) == 0
    # what is configured: the route from /routes, the backend's clusters from /endpoints
    await page.wait_for("document.querySelector('#routes tr[data-route=\"shop\"]') !== null")
    clusters = await page.wait_for(
        "[...document.querySelectorAll('#backends details[data-backend=\"api\"] tr[data-cluster]')]"
        ".map(r => r.getAttribute('data-cluster')).join(',')"
    )
    assert clusters == "east,west"

    await send(gateway.listener + "/hello", 120)
    await page.wait_for(number("kpi-requests") + " >= 120")
    assert await page.evaluate(number("kpi-requests")) == 120
    await page.wait_for(number("kpi-rps") + " > 0")
    split = await page.wait_for(
        "(() => { const rows = [...document.querySelectorAll('#split tr[data-backend=\"api\"]')];"
        " return rows.length === 2 ? rows.map(r => r.getAttribute('data-cluster') + '='"
        " + r.querySelector('.split-requests').textContent).join(',') : null; })()"
    )
    east, west = (int(part.split("=")[1]) for part in split.split(","))
    assert east + west == 120 and east > 0 and west > 0, split
    await page.wait_for(number("kpi-p99") + " > 0")
    await page.wait_for("document.querySelectorAll('#chart-rps polyline').length >= 1")

    await page.wait_for(number("kpi-rps") + " === 0", timeout_s=5)  # traffic stopped

    gateway.write(extra=EXTRA_ROUTE)
    os.kill(gateway.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
    await page.wait_for("document.querySelector('#routes tr[data-route=\"checkout\"]') !== null")
    await page.wait_for(
        "[...document.querySelectorAll('#events li.reload')]"
        ".some(li => li.textContent.includes('config reloaded'))"
    )
    await send(gateway.listener + "/checkout/cart", 10)
    await page.wait_for(
        "document.querySelector('#routes tr[data-route=\"checkout\"] .route-rps').textContent"
        " !== '–'"
    )
    await page.wait_for(number("kpi-requests") + " === 130")
    # a cluster lost: its endpoint leaves rotation (outlier ejection), listed with an event
    await gateway.upstreams.pop("west").cleanup()
    traffic = asyncio.create_task(keep_sending(gateway.listener + "/hello"))  # keeps it ejected
    try:
        await page.wait_for(
            "document.getElementById('out-of-rotation').textContent.includes('west/127.0.0.1')"
        )
        await page.wait_for(
            "[...document.querySelectorAll('#events li.out')]"
            ".some(li => li.textContent.includes('west/127.0.0.1'))"
        )
        await page.wait_for(
            'document.querySelector(\'#backends details[data-backend="api"]'
            ' tr[data-cluster="west"] td.warn\') !== null'
        )
    finally:
        traffic.cancel()

    async with aiohttp.ClientSession() as s, s.get(gateway.admin + "/rollouts") as r:
        serves_rollouts = r.status == 200
    # rollout progress shows exactly when the admin API serves /rollouts (none configured here)
    if serves_rollouts:
        await page.wait_for("document.querySelector('#rollout-list .empty') !== null")
    assert await page.evaluate("document.getElementById('rollouts').hidden") is not serves_rollouts
    assert page.errors == []
