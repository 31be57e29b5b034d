"""config/local-static.yaml runs as it is: `portway gateway --config` and nothing else."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.config.loader import load_config
from portway.port_holder import port_taken

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "config" / "local-static.yaml"


async def test_local_static_example_serves_as_it_is(tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    (listener,) = config.listeners
    (backend,) = config.backends
    (endpoint,) = backend.endpoints
    wanted = [
        (listener.address, listener.port),
        (config.admin.address, config.admin.port),
        (endpoint.address, endpoint.port),
    ]
    for address, port in wanted:
        assert port_taken(address, port) is None, f"the example needs {address}:{port} free"
    gateway_url = f"http://{listener.address}:{listener.port}"

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"upstream saw {request.path}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "portway",
            "gateway",
            "--config",
            "config/local-static.yaml",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
                try:
                    async with session.get(f"http://127.0.0.1:{config.admin.port}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "gateway not ready"
                await asyncio.sleep(0.1)
            async with session.get(f"{gateway_url}/old-home", allow_redirects=False) as resp:
                assert (resp.status, resp.headers["location"]) == (301, f"{gateway_url}/")
            async with session.get(f"{gateway_url}/") as resp:
                assert resp.status == 503  # nothing on the static endpoint yet, as the header says
            await web.TCPSite(runner, endpoint.address, endpoint.port).start()
            async with session.get(f"{gateway_url}/shop") as resp:
                assert resp.status == 200
                assert await resp.text() == "upstream saw /shop"
                assert resp.headers["x-served-by"] == "portway"
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
        await runner.cleanup()
