"""telemetry.traceSampleRatio decides which requests without a caller's trace export a span;
telemetry.serviceName names the service the spans come from."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
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


async def spans_exported(tmp_path: Path, ratio: float, requests: int = 8) -> tuple[int, set[str]]:
    """Run a gateway with the ratio, send requests without traceparent: spans, service names."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    spans: list[Any] = []
    services: set[str] = set()

    async def collect(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest.FromString(await request.read())
        spans.extend(s for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans)
        for rs in message.resource_spans:
            services.update(
                a.value.string_value for a in rs.resource.attributes if a.key == "service.name"
            )
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/traces", collect)
    app.router.add_get("/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    aux = free_port()
    await web.TCPSite(runner, "127.0.0.1", aux).start()
    port, admin = free_port(), free_port()
    config = tmp_path / f"gw-{ratio}.yaml"
    config.write_text(
        f"""\
version: 1
listeners: [{{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}]
routes: [{{name: r, rules: [{{backendRefs: [{{name: b}}]}}]}}]
backends: [{{name: b, endpoints: [{{address: 127.0.0.1, port: {aux}}}]}}]
admin: {{address: 127.0.0.1, port: {admin}}}
telemetry:
  otlpEndpoint: 'http://127.0.0.1:{aux}'
  traceSampleRatio: {ratio}
  serviceName: edge-{ratio}
"""
    )
    log = (tmp_path / f"gw-{ratio}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "portway", "gateway", "--config", str(config), "--workers", "1"],
        cwd=ROOT,
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None
                try:
                    async with session.get(f"http://127.0.0.1:{admin}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            for i in range(requests):
                async with session.get(f"http://127.0.0.1:{port}/{i}") as resp:
                    assert resp.status == 200
        proc.terminate()  # a clean stop flushes the span exporter
        await asyncio.to_thread(proc.wait, 15)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
        await runner.cleanup()
    return len(spans), services


async def test_ratio_one_traces_every_request_and_zero_none(tmp_path: Path) -> None:
    assert await spans_exported(tmp_path, 1.0) == (8, {"edge-1.0"})
    assert await spans_exported(tmp_path, 0.0) == (0, set())
