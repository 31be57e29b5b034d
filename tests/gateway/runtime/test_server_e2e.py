"""`portway gateway` as a real process: reload under load, rejection, drain, workers, telemetry.

Each test starts `python -m portway gateway` on loopback ports, real upstream
HTTP servers (aiohttp, in the test's loop) and real clients, and stops
everything it started. Bounded: a few hundred requests per test at most.
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
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[3]
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_text(
    *,
    port: int,
    admin_port: int,
    upstream: int,
    route: str = "shop",
    path: str = "/",
    telemetry: str = "",
    extra_listener: int | None = None,
) -> str:
    second = (
        f"  - {{name: web2, protocol: HTTP, address: 127.0.0.1, port: {extra_listener}}}\n"
        if extra_listener
        else ""
    )
    return f"""\
version: 1
listeners:
  - {{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}
{second}routes:
  - name: {route}
    rules:
      - matches: [{{path: {{type: PathPrefix, value: "{path}"}}}}]
        backendRefs: [{{name: api}}]
backends:
  - name: api
    endpoints:
      - {{address: 127.0.0.1, port: {upstream}, cluster: local}}
admin: {{address: 127.0.0.1, port: {admin_port}}}
{telemetry}"""


class Upstream:
    """A real HTTP server answering with its name; `delay_s` makes it slow."""

    def __init__(self, name: str, delay_s: float = 0.0) -> None:
        self.name = name
        self.delay_s = delay_s
        self.port = free_port()
        self.headers: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if self.delay_s and request.path.startswith("/slow"):
            await asyncio.sleep(self.delay_s)
        return web.Response(text=f"{self.name} {request.path}")

    async def start(self) -> Upstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Gateway:
    """A `portway gateway` subprocess with its stderr (JSON logs) in a file."""

    def __init__(self, tmp: Path, text: str, *, workers: int = 1, drain_s: float = 10) -> None:
        self.config = tmp / "gateway.yaml"
        self.config.write_text(text)
        self.log_path = tmp / "gateway.log"
        self.workers = workers
        self.drain_s = drain_s
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, admin_port: int) -> Gateway:
        self.admin = f"http://127.0.0.1:{admin_port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "portway", "gateway", "--config", str(self.config)]
        args += ["--workers", str(self.workers), "--drain-timeout", str(self.drain_s)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(args, stderr=log, stdout=log, cwd=ROOT, env=env)
        return self

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    async def get_admin(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.get(self.admin + path) as r:
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, await r.text()

    async def wait_ready(self, listener_port: int, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()
            try:
                status, _ = await self.get_admin("/readyz")
                if status == 200:
                    _, w = await asyncio.open_connection("127.0.0.1", listener_port)
                    w.close()
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("gateway not ready:\n" + self.log_path.read_text())

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        _, text = await self.get_admin("/metrics")
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(self.drain_s + 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


@pytest.fixture
async def upstreams() -> AsyncIterator[Callable[..., Any]]:
    started: list[Upstream] = []

    async def make(name: str, delay_s: float = 0.0) -> Upstream:
        up = await Upstream(name, delay_s).start()
        started.append(up)
        return up

    yield make
    for up in started:
        await up.stop()


@pytest.fixture
def gateways() -> Any:
    started: list[Gateway] = []

    def make(*args: Any, **kw: Any) -> Gateway:
        gw = Gateway(*args, **kw)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


async def fetch(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str]:
    async with session.get(url, **kw) as r:
        return r.status, await r.text()


async def wait_for(predicate: Callable[[], Any], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_reload_under_load_switches_routes_without_failing_a_request(
    tmp_path: Path, upstreams: Any, gateways: Any
) -> None:
    old, new = await upstreams("old"), await upstreams("new")
    port, admin = free_port(), free_port()
    gw = gateways(tmp_path, config_text(port=port, admin_port=admin, upstream=old.port)).start(
        admin
    )
    await gw.wait_ready(port)
    url = f"http://127.0.0.1:{port}/x"
    results: list[tuple[int, str]] = []
    rewritten = asyncio.Event()

    async def client() -> None:
        deadline = time.monotonic() + 15
        async with aiohttp.ClientSession() as s:
            for _ in range(1500):  # bounded in count and time
                results.append(await fetch(s, url))
                new_seen = results[-1][1].startswith("new")
                if (rewritten.is_set() and new_seen) or time.monotonic() > deadline:
                    return

    clients = [asyncio.create_task(client()) for _ in range(4)]
    await asyncio.sleep(0.3)
    tmp = gw.config.with_suffix(".tmp")
    tmp.write_text(config_text(port=port, admin_port=admin, upstream=new.port, route="shop2"))
    tmp.replace(gw.config)
    rewritten.set()
    await asyncio.gather(*clients)
    assert results and all(status == 200 for status, _ in results), results
    assert results[-1][1] == "new /x"
    _, body = await gw.get_admin("/routes")
    assert [r["name"] for r in body["routes"]] == ["shop2"]


async def test_invalid_reload_is_rejected_and_old_routes_keep_serving(
    tmp_path: Path, upstreams: Any, gateways: Any
) -> None:
    up = await upstreams("up")
    port, admin = free_port(), free_port()
    gw = gateways(tmp_path, config_text(port=port, admin_port=admin, upstream=up.port)).start(admin)
    await gw.wait_ready(port)
    broken = config_text(port=port, admin_port=admin, upstream=up.port).replace(
        "protocol: HTTP", "protocol: GOPHER"
    )
    gw.config.write_text(broken)
    gw.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

    async def rejected() -> bool:
        return any(x["msg"].startswith("config rejected") for x in gw.logs())

    await wait_for(rejected)
    line = next(x for x in gw.logs() if x["msg"].startswith("config rejected"))
    assert line["level"] == "error"
    assert any(i.startswith(f"{gw.config}:3:27: listeners[0].protocol: ") for i in line["issues"])
    metrics = await gw.metrics()
    assert metrics[("portway_config_reloads_total", (("result", "failure"),))] == 1
    assert metrics[("portway_config_reloads_total", (("result", "success"),))] == 1
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, f"http://127.0.0.1:{port}/still") == (200, "up /still")
    _, config = await gw.get_admin("/config")
    assert config["last_reload_error"]["issues"] == line["issues"]


async def test_sigterm_drains_in_flight_requests_and_refuses_new_connections(
    tmp_path: Path, upstreams: Any, gateways: Any
) -> None:
    slow = await upstreams("slow", delay_s=1.5)
    port, admin = free_port(), free_port()
    gw = gateways(tmp_path, config_text(port=port, admin_port=admin, upstream=slow.port)).start(
        admin
    )
    await gw.wait_ready(port)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    idle_writer.write(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await idle_reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower()
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    assert await idle_reader.readexactly(length) == b"slow /idle"
    async with aiohttp.ClientSession() as s:
        pending = asyncio.create_task(fetch(s, f"http://127.0.0.1:{port}/slow"))
        await wait_for(lambda: asyncio.sleep(0, len(slow.headers) == 2))
        gw.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        # the idle keep-alive connection is closed at once, the slow request still runs
        assert await asyncio.wait_for(idle_reader.read(), 1.0) == b""
        assert not pending.done()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        assert await pending == (200, "slow /slow")
    idle_writer.close()
    assert await asyncio.to_thread(gw.proc.wait, 10) == 0  # type: ignore[union-attr]
    drained = next(x for x in gw.logs() if x["msg"] == "drained")
    assert drained["left_in_flight"] == 0


async def test_workers_share_the_port_and_admin_reports_totals(
    tmp_path: Path, upstreams: Any, gateways: Any
) -> None:
    up = await upstreams("up")
    port, admin = free_port(), free_port()
    gw = gateways(
        tmp_path, config_text(port=port, admin_port=admin, upstream=up.port), workers=2
    ).start(admin)
    await gw.wait_ready(port)

    def children() -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(gw.proc.pid)],  # type: ignore[union-attr]
            capture_output=True,
            text=True,
        ).stdout
        return [int(x) for x in out.split()]

    async def two_serving() -> bool:
        return len(children()) == 2 and all(
            any(x.get("pid") == pid and x["msg"] == "gateway worker serving" for x in gw.logs())
            for pid in children()
        )

    await wait_for(two_serving, 20)
    serving = [x for x in gw.logs() if x["msg"] == "gateway worker serving"]
    assert all(x["frozen_objects"] > 10_000 for x in serving), serving  # modules, config, table
    assert all(x["hot_path"] for x in serving)
    n = 40
    for _ in range(n):  # a new connection each time, so the kernel spreads them
        async with aiohttp.ClientSession() as s:
            assert (await fetch(s, f"http://127.0.0.1:{port}/w"))[0] == 200
    metrics = await gw.metrics()
    key = (("backend", "api"), ("cluster", "local"), ("code", "200"), ("route", "shop"))
    assert metrics.get(("portway_requests_total", key)) == n, gw.log_path.read_text()[-3000:]
    victim = children()[0]
    os.kill(victim, signal.SIGKILL)

    async def restarted() -> bool:
        kids = children()
        return len(kids) == 2 and victim not in kids

    await wait_for(restarted, 20)
    await wait_for(two_serving, 20)
    async with aiohttp.ClientSession() as s:
        assert (await fetch(s, f"http://127.0.0.1:{port}/after"))[0] == 200


async def test_access_log_metrics_and_traces_from_real_requests(
    tmp_path: Path, upstreams: Any, gateways: Any
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    up = await upstreams("up")
    spans: list[Any] = []

    async def collect(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest.FromString(await request.read())
        for rs in message.resource_spans:
            for ss in rs.scope_spans:
                spans.extend(ss.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    collector_app = web.Application()
    collector_app.router.add_post("/v1/traces", collect)
    collector = web.AppRunner(collector_app, access_log=None)
    await collector.setup()
    otlp_port = free_port()
    await web.TCPSite(collector, "127.0.0.1", otlp_port).start()
    access = tmp_path / "access.log"
    telemetry = (
        f"telemetry: {{accessLog: {access}, otlpEndpoint: 'http://127.0.0.1:{otlp_port}',"
        " serviceName: gw-test}\n"
    )
    port, admin = free_port(), free_port()
    text = config_text(port=port, admin_port=admin, upstream=up.port, telemetry=telemetry)
    gw = gateways(tmp_path, text).start(admin)
    try:
        await gw.wait_ready(port)
        async with aiohttp.ClientSession() as s:
            for i in range(3):
                status, _ = await fetch(
                    s,
                    f"http://127.0.0.1:{port}/t/{i}",
                    headers={"traceparent": PARENT, "user-agent": "e2e", "x-request-id": f"r{i}"},
                )
                assert status == 200
        metrics = await gw.metrics()
        key = (("backend", "api"), ("cluster", "local"), ("code", "200"), ("route", "shop"))
        assert metrics[("portway_requests_total", key)] == 3
        assert metrics[("portway_request_duration_seconds_count", (("route", "shop"),))] == 3
        assert await asyncio.to_thread(gw.stop) == 0
    finally:
        await collector.cleanup()
    lines = [json.loads(x) for x in access.read_text().splitlines()]
    assert [x["path"] for x in lines] == ["/t/0", "/t/1", "/t/2"]
    first = lines[0]
    assert first["method"] == "GET" and first["response_code"] == 200
    assert first["route_name"] == "shop" and first["upstream_cluster"] == "local"
    assert first["user_agent"] == "e2e" and first["x_request_id"] == "r0"
    assert first["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert first["start_time"].endswith("Z") and isinstance(first["duration"], int)
    sent = [h.get("traceparent", "") for h in up.headers]
    assert all(tp.startswith("00-0af7651916cd43dd8448eb211c80319c-") for tp in sent)
    assert len(spans) == 3
    span_ids = {span.span_id.hex() for span in spans}
    assert {tp.split("-")[2] for tp in sent} == span_ids  # upstream's parent is our span
    assert all(span.parent_span_id.hex() == "b7ad6b7169203331" for span in spans)
    assert all(span.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c" for span in spans)


async def test_registry_records_drive_routing_and_readiness(
    tmp_path: Path, upstreams: Any, gateways: Any
) -> None:
    from portway.model import Node, ServicePort, ServiceRecord
    from portway.registry.files import FilesRegistry

    first, second = await upstreams("first"), await upstreams("second")
    registry_dir = tmp_path / "registry"
    writer = FilesRegistry(registry_dir)

    def record(node_port: int) -> ServiceRecord:
        return ServiceRecord(
            cluster="east",
            namespace="shop",
            service="api",
            ports=(ServicePort("http", 80, node_port),),
            nodes=(Node("n1", "127.0.0.1"),),
            node_port_range=(1024, 65535),
        )

    await writer.publish(record(first.port), ttl_s=None)
    port, admin = free_port(), free_port()
    text = (
        config_text(port=port, admin_port=admin, upstream=1).replace(
            "    endpoints:\n      - {address: 127.0.0.1, port: 1, cluster: local}\n",
            "    service: {namespace: shop, name: api, port: http}\n",
        )
        + f"registry: {{type: files, path: '{registry_dir}', debounce: 20ms}}\n"
    )
    gw = gateways(tmp_path, text).start(admin)
    try:
        await gw.wait_ready(port)
        _, ready = await gw.get_admin("/readyz")
        assert ready["registry_synced"] is True
        url = f"http://127.0.0.1:{port}/r"
        async with aiohttp.ClientSession() as s:
            assert await fetch(s, url) == (200, "first /r")
            await writer.publish(record(second.port), ttl_s=None)

            async def moved() -> bool:
                return (await fetch(s, url))[1] == "second /r"

            await wait_for(moved, 10)
        _, eps = await gw.get_admin("/endpoints")
        (endpoint,) = eps["backends"]["api"]
        assert endpoint["key"] == f"east/127.0.0.1:{second.port}"
        assert endpoint["cluster"] == "east" and endpoint["available"]
    finally:
        await writer.close()


async def test_listeners_added_and_removed_on_reload(
    tmp_path: Path, upstreams: Any, gateways: Any
) -> None:
    up = await upstreams("up")
    port, admin, extra = free_port(), free_port(), free_port()
    gw = gateways(tmp_path, config_text(port=port, admin_port=admin, upstream=up.port)).start(admin)
    await gw.wait_ready(port)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", extra)
    gw.config.write_text(
        config_text(port=port, admin_port=admin, upstream=up.port, extra_listener=extra)
    )
    async with aiohttp.ClientSession() as s:

        async def served_on_extra() -> bool:
            try:
                return await fetch(s, f"http://127.0.0.1:{extra}/e") == (200, "up /e")
            except aiohttp.ClientError:
                return False

        await wait_for(served_on_extra)
    gw.config.write_text(
        config_text(
            port=port,
            admin_port=admin,
            upstream=up.port,
            telemetry="telemetry: {serviceName: renamed}\n",
        )
    )

    async def extra_closed() -> bool:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", extra)
        except OSError:
            return True
        w.close()
        return False

    await wait_for(extra_closed)
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, f"http://127.0.0.1:{port}/main") == (200, "up /main")
    restart = [x for x in gw.logs() if x["msg"] == "config change needs a restart to take effect"]
    assert [x["section"] for x in restart] == ["telemetry"]


def test_invalid_config_at_startup_exits_1_with_positions(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nlisteners:\n  - {name: web, protocol: GOPHER, port: 1}\n")
    res = subprocess.run(
        [sys.executable, "-m", "portway", "gateway", "--config", str(path), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert res.returncode == 1
    assert f"{path}:3:27: listeners[0].protocol: " in res.stderr


def test_port_in_use_at_startup_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "gw.yaml"
        path.write_text(config_text(port=port, admin_port=free_port(), upstream=1))
        res = subprocess.run(
            [sys.executable, "-m", "portway", "gateway", "--config", str(path), "--workers", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    assert res.returncode == 1
    assert "cannot start" in res.stderr
