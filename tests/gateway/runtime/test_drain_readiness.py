"""/readyz answers 503 while the gateway drains, with one worker and under a supervisor."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def readyz(session: aiohttp.ClientSession, admin: int) -> int | None:
    try:
        async with session.get(f"http://127.0.0.1:{admin}/readyz") as resp:
            return resp.status
    except aiohttp.ClientError:
        return None


@pytest.mark.parametrize("workers", [1, 2])
async def test_readyz_is_503_from_sigterm_until_exit(tmp_path: Path, workers: int) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/{tail:.*}", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    upstream = free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream).start()
    port, admin = free_port(), free_port()
    config = tmp_path / "gw.yaml"
    config.write_text(
        f"""\
version: 1
listeners: [{{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}]
routes: [{{name: r, rules: [{{backendRefs: [{{name: b}}], timeouts: {{request: 10s}}}}]}}]
backends: [{{name: b, endpoints: [{{address: 127.0.0.1, port: {upstream}}}]}}]
admin: {{address: 127.0.0.1, port: {admin}}}
"""
    )
    args = [sys.executable, "-m", "portway", "gateway", "--config", str(config)]
    proc = subprocess.Popen(
        [*args, "--workers", str(workers), "--drain-timeout", "8"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 20
            while await readyz(session, admin) != 200:
                assert proc.poll() is None and time.monotonic() < deadline
                await asyncio.sleep(0.1)
            in_flight = asyncio.create_task(session.get(f"http://127.0.0.1:{port}/slow"))
            await asyncio.sleep(0.5)  # the request is at the upstream
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)  # the signal reaches the process's loop
            seen = set()
            while not in_flight.done():
                status = await readyz(session, admin)
                if status is not None:
                    seen.add(status)
                await asyncio.sleep(0.1)
            resp = await in_flight
            assert resp.status == 200  # drained, not cut
            assert seen == {503}, f"/readyz answered {seen} while draining"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 20)
        await runner.cleanup()
