"""The dashboard's page, assets and event stream over a real reloader, counters and endpoint state.

The source is one in-process worker as the admin API reads it (real
`Reloader`, `RequestStats`, `EndpointState`, availability counted by
`backend_counts`); the stream is read as a browser would, over HTTP.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import socket
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.ops.backend_health import backend_counts, unavailable_keys
from gateway.ops.dashboard import DashboardSite
from gateway.ops.dashboard.stream import read_reports, sampling_pause_s, snapshot_between
from gateway.ops.dashboard.web import ASSETS
from gateway.ops.metrics import MetricsSnapshot, RequestStats
from gateway.routing.endpoints import EndpointState
from gateway.runtime.reload import Reloader

ROOT = Path(__file__).resolve().parents[3]
CONFIG = """\
version: 1
listeners:
  - {{name: web, protocol: HTTP, port: 18080}}
routes:
  - name: {route}
    rules:
      - backendRefs: [{{name: api}}]
backends:
  - name: api
    endpoints:
      - {{address: 127.0.0.1, port: 30080, cluster: a}}
      - {{address: 127.0.0.2, port: 30080, cluster: b}}
"""
TICK_S = 0.1


class WorkerSource:
    """One in-process worker as the admin API reads it."""

    def __init__(self, reloader: Reloader) -> None:
        self.reloader = reloader
        self.needs_registry = False
        self.expected_workers = 1
        self.state = EndpointState()
        self.stats = RequestStats()
        self.reasons: dict[str, str] = {}

    async def reports(self, **_options: bool) -> list[dict[str, Any]]:
        counts = backend_counts(self.reloader.table.backends, unavailable_keys(self.state))
        snap = MetricsSnapshot.capture(self.stats, backend_endpoints=counts)
        return [
            {
                "pid": 1,
                "metrics": snap.to_json(),
                "endpoints": {
                    "unhealthy": sorted(self.state.unhealthy),
                    "ejected": sorted(self.state.ejected),
                    "draining": sorted(self.state.draining),
                    "reasons": dict(self.reasons),
                },
            }
        ]

    async def set_endpoint_draining(self, key: str, draining: bool) -> None:
        self.state.set_draining(key, draining)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, base: str, source: WorkerSource, site: DashboardSite, app: web.Application):
        self.base = base
        self.source = source
        self.site = site
        self.app = app


@pytest.fixture
async def source(tmp_path: Path) -> WorkerSource:
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG.format(route="shop"))
    reloader = Reloader(path, lambda t, a: None, debounce_s=0.01)
    await reloader.load_initial()
    return WorkerSource(reloader)


async def serve(source: WorkerSource, app: web.Application) -> tuple[str, web.AppRunner]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}", runner


@pytest.fixture
async def served(source: WorkerSource) -> AsyncIterator[Served]:
    app = web.Application()
    site = DashboardSite(source, tick_s=TICK_S)
    site.register(app)
    base, runner = await serve(source, app)
    try:
        yield Served(base, source, site, app)
    finally:
        await runner.cleanup()


class Stream:
    """A page's view of `/dashboard/events`: (event name, JSON data) pairs."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, name: str | None = None, timeout_s: float = 5.0) -> dict[str, Any]:
        event, data = "message", ""
        async with asyncio.timeout(timeout_s):
            async for raw in self.response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif not line and data:
                    if name is None or event == name:
                        parsed: dict[str, Any] = json.loads(data)
                        return parsed
                    event, data = "message", ""
        raise AssertionError("stream ended")

    async def until(self, check: Any, timeout_s: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            snap = await self.next("snapshot", timeout_s=max(0.1, deadline - time.monotonic()))
            if check(snap):
                return snap


@pytest.fixture
async def stream(served: Served) -> AsyncIterator[Stream]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(served.base + "/dashboard/events") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        yield Stream(response)


def test_workers_reports_add_up_as_one_gateway() -> None:
    """Counters summed, availability the lowest any worker reports, out of rotation anywhere."""
    one, two = RequestStats(), RequestStats()
    for _ in range(3):
        one.record("shop", "api", "a", 200, 0.002)
    two.record("shop", "api", "a", 502, 0.004)
    two.record("shop", "api", "b", 200, 0.002)
    reports = [
        {
            "metrics": MetricsSnapshot.capture(
                one, backend_endpoints={("api", "a"): (2, 2)}, active_connections=4
            ).to_json(),
            "endpoints": {"ejected": ["a/10.0.0.1:1"]},
        },
        {
            "metrics": MetricsSnapshot.capture(
                two, backend_endpoints={("api", "a"): (1, 2)}, active_connections=1
            ).to_json(),
            "endpoints": {},
        },
    ]
    reading = read_reports(reports)
    assert reading.workers == 2 and reading.active_connections == 5
    assert reading.counters.by_backend == {("api", "a"): (4, 1), ("api", "b"): (1, 0)}
    assert reading.availability == {("api", "a"): (1, 2)}
    assert reading.rotation == {"a/10.0.0.1:1": "ejected"}
    assert sum(reading.counters.overall) == 5
    first = snapshot_between(None, reading, 0.0)
    assert first["baseline"] is True and first["totals"]["requests"] == 5


def test_sampling_takes_a_tick_unless_it_is_slow_then_at_most_its_budget() -> None:
    assert sampling_pause_s(0.01, tick_s=1.0, budget=0.05) == pytest.approx(0.99)
    assert sampling_pause_s(0.2, tick_s=1.0, budget=0.05) == pytest.approx(3.8)  # 5 % of 4 s


async def test_hello_then_snapshots_that_follow_the_counters(
    served: Served, stream: Stream
) -> None:
    hello = await stream.next("hello")
    assert hello["rollouts"] is None and hello["tick_s"] == TICK_S
    assert [(e["kind"], e["text"]) for e in hello["events"]] == [("reload", "config loaded")]
    first = await stream.next("snapshot")
    assert first["baseline"] is True and first["totals"]["requests"] == 0
    assert first["config"]["version"] == served.source.reloader.active.version  # type: ignore[union-attr]

    stats = served.source.stats
    for _ in range(20):
        stats.record("shop", "api", "a", 200, 0.002)
    for _ in range(5):
        stats.record("shop", "api", "b", 503, 0.2)
    snap = await stream.until(lambda s: s["totals"]["requests"] == 25)
    totals = snap["totals"]
    assert snap["baseline"] is False and snap["workers"] == 1
    assert totals["rps"] == pytest.approx(25 / snap["interval_s"], rel=0.01)
    assert totals["error_rate"] == 0.2
    assert 1 < totals["p50_ms"] <= 2.5 and 100 < totals["p99_ms"] <= 250
    rows = {(b["backend"], b["cluster"]): b for b in snap["backends"]}
    assert rows[("api", "a")]["share"] == 0.8 and rows[("api", "b")]["share"] == 0.2
    assert (rows[("api", "a")]["available"], rows[("api", "a")]["endpoints"]) == (1, 1)
    (route,) = snap["routes"]
    assert route["route"] == "shop" and route["requests"] == 25

    idle = await stream.next("snapshot")
    assert idle["totals"]["rps"] == 0 and idle["totals"]["p99_ms"] is None


async def test_rotation_changes_become_events_while_watched(served: Served, stream: Stream) -> None:
    await stream.next("snapshot")
    source = served.source
    source.state.set_unhealthy("b/127.0.0.2:30080", True)
    source.reasons["b/127.0.0.2:30080"] = "health check failed: refused"
    out = await stream.until(lambda s: s["out_of_rotation"]["count"] == 1)
    assert out["out_of_rotation"]["endpoints"] == [
        {"key": "b/127.0.0.2:30080", "reason": "health check failed: refused"}
    ]
    assert [(e["kind"], e["subject"], e["text"]) for e in out["events"]] == [
        ("out", "b/127.0.0.2:30080", "health check failed: refused")
    ]
    rows = {b["cluster"]: b for b in out["backends"]}
    assert (rows["b"]["available"], rows["b"]["endpoints"]) == (0, 1)
    source.state.set_unhealthy("b/127.0.0.2:30080", False)
    back = await stream.until(lambda s: s["out_of_rotation"]["count"] == 0)
    assert [(e["kind"], e["subject"]) for e in back["events"]] == [("back", "b/127.0.0.2:30080")]


async def test_reloads_are_recorded_with_nobody_watching(served: Served) -> None:
    reloader = served.source.reloader
    pump = asyncio.create_task(reloader.run())
    try:
        reloader.path.write_text(CONFIG.format(route="Bad_Name"))
        reloader.request_reload()
        await asyncio.wait_for(reloader.settled(), 5)
        await asyncio.sleep(TICK_S * 3)  # the watcher looks once a tick
        reloader.path.write_text(CONFIG.format(route="checkout"))
        reloader.request_reload()
        await asyncio.wait_for(reloader.settled(), 5)
    finally:
        pump.cancel()
    await asyncio.sleep(TICK_S * 3)
    assert served.site.feed.subscribers == 0
    async with (
        aiohttp.ClientSession() as session,
        session.get(served.base + "/dashboard/events") as response,
    ):
        hello = await Stream(response).next("hello")
    kinds = [(e["kind"], e["text"].split(":")[0]) for e in hello["events"]]
    assert kinds == [
        ("reload", "config loaded"),
        ("rejected", "config rejected, last good config kept"),
        ("reload", "config reloaded"),
    ]
    assert "routes[0].name" in hello["events"][1]["text"]


async def test_the_sampler_stops_when_the_last_page_leaves(served: Served) -> None:
    feed = served.site.feed
    async with (
        aiohttp.ClientSession() as session,
        session.get(served.base + "/dashboard/events") as response,
    ):
        await Stream(response).next("snapshot")
        assert feed.subscribers == 1
    deadline = time.monotonic() + 3
    while feed.subscribers or (feed._sampler is not None and not feed._sampler.done()):
        assert time.monotonic() < deadline, "the sampler outlived its last page"
        await asyncio.sleep(0.05)


async def test_pages_beyond_the_limit_are_refused(served: Served, stream: Stream) -> None:
    served.site.feed.max_subscribers = 1
    await stream.next("snapshot")
    async with (
        aiohttp.ClientSession() as session,
        session.get(served.base + "/dashboard/events") as response,
    ):
        assert response.status == 503
        assert "already open" in (await response.json())["error"]


async def test_admin_shutdown_ends_open_streams_at_once(source: WorkerSource) -> None:
    app = web.Application()
    DashboardSite(source, tick_s=TICK_S).register(app)
    base, runner = await serve(source, app)
    async with (
        aiohttp.ClientSession() as session,
        session.get(base + "/dashboard/events") as response,
    ):
        await Stream(response).next("snapshot")
        started = time.monotonic()
        await runner.cleanup()
        assert time.monotonic() - started < 2


async def test_rollouts_are_offered_only_when_the_admin_api_serves_them(
    source: WorkerSource,
) -> None:
    async def rollouts(request: web.Request) -> web.Response:
        return web.json_response({"rollouts": []})

    app = web.Application()
    app.router.add_get("/rollouts", rollouts)
    DashboardSite(source, tick_s=TICK_S).register(app)
    base, runner = await serve(source, app)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(base + "/dashboard/events") as response,
        ):
            hello = await Stream(response).next("hello")
        assert hello["rollouts"] == "/rollouts"
    finally:
        await runner.cleanup()


async def test_the_page_and_its_assets_are_served_with_their_types(served: Served) -> None:
    async with aiohttp.ClientSession() as session:
        for path, kind, marker in (
            ("/dashboard", "text/html", '<script src="/dashboard/dashboard.js"'),
            ("/dashboard/dashboard.js", "text/javascript", 'new EventSource("/dashboard/events")'),
            ("/dashboard/dashboard.css", "text/css", ".kpi"),
        ):
            async with session.get(served.base + path) as response:
                assert response.status == 200, path
                assert response.content_type == kind
                assert marker in await response.text()


def test_every_asset_is_package_data() -> None:
    """A wheel carries the page: each asset matches a pattern of [tool.setuptools.package-data]."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["*"]
    folder = ROOT / "gateway" / "ops" / "dashboard"
    assert (folder / "__init__.py").exists()
    for name in ASSETS:
        assert (folder / name).exists(), name
        assert any(fnmatch.fnmatch(name, p) for p in patterns), (name, patterns)
