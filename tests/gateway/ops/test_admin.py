"""The admin API over a real reloader and compiled table, served by aiohttp on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import compiled
from gateway.ops.admin import start_admin
from gateway.ops.metrics import MetricsSnapshot, RequestStats
from gateway.rollout.api import RolloutApi
from gateway.rollout.runner import RolloutRunner
from gateway.routing.endpoints import EndpointState
from gateway.runtime.reload import Reloader

CONFIG = """\
version: 1
gateway: {{region: eu, zone: eu-1a}}
listeners:
  - name: web
    protocol: HTTP
    port: 18080
routes:
  - name: {route}
    listeners: [web]
    hostnames: [shop.example.com]
    rules:
      - backendRefs: [{{name: api}}]
backends:
  - name: api
    endpoints:
      - {{address: 127.0.0.1, port: 30080, cluster: a, region: eu, zone: eu-1a}}
      - {{address: 127.0.0.2, port: 30080, cluster: b, region: eu, zone: eu-1b}}
"""


class LocalSource:
    """An in-process gateway's admin view: one worker's state and counters."""

    def __init__(self, reloader: Reloader) -> None:
        self.reloader = reloader
        self.needs_registry = False
        self.expected_workers = 1
        self.draining = False
        self.state = EndpointState()
        self.stats = RequestStats()
        self.rollouts: RolloutRunner | None = None

    async def reports(self, **_options: bool) -> list[dict[str, Any]]:
        snap = MetricsSnapshot.capture(self.stats)
        return [
            {
                "metrics": snap.to_json(),
                "endpoints": {
                    "unhealthy": sorted(self.state.unhealthy),
                    "ejected": sorted(self.state.ejected),
                    "draining": sorted(self.state.draining),
                    "in_flight": dict(self.state.in_flight),
                },
            }
        ]

    async def set_endpoint_draining(self, key: str, draining: bool) -> None:
        self.state.set_draining(key, draining)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[tuple[str, LocalSource]]:
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG.format(route="shop"))
    reloader = Reloader(path, lambda t, a: None, debounce_s=0.01)
    await reloader.load_initial()
    source = LocalSource(reloader)
    port = _free_port()
    runner = await start_admin(source, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}", source
    finally:
        await runner.cleanup()


async def _get(url: str, method: str = "GET") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, url) as r:
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, await r.text()


async def test_health_and_readiness(admin: tuple[str, LocalSource]) -> None:
    base, source = admin
    assert await _get(base + "/healthz") == (200, {"status": "ok"})
    status, body = await _get(base + "/readyz")
    assert status == 200 and body["ready"] and body["config_loaded"]
    source.needs_registry = True
    status, body = await _get(base + "/readyz")
    assert status == 503 and body["registry_synced"] is False
    source.reloader.on_snapshot({})
    status, body = await _get(base + "/readyz")
    assert status == 503, "the registry synced, but no table built from it serves yet"
    pump = asyncio.create_task(source.reloader.run())
    await asyncio.wait_for(source.reloader.settled(), 5)
    pump.cancel()
    status, _ = await _get(base + "/readyz")
    assert status == 200
    source.expected_workers = 2  # a supervisor waiting for its second worker
    status, body = await _get(base + "/readyz")
    assert status == 503 and body["workers_serving"] is False


async def test_config_shows_version_source_and_last_error(admin: tuple[str, LocalSource]) -> None:
    base, source = admin
    status, body = await _get(base + "/config")
    assert status == 200
    assert body["version"] == source.reloader.active.version  # type: ignore[union-attr]
    assert body["source"].endswith("gw.yaml")
    assert body["last_reload_error"] is None
    assert body["hot_path"] == compiled.state
    source.reloader.path.write_text(CONFIG.format(route="Bad_Name"))
    pump = asyncio.create_task(source.reloader.run())
    source.reloader.request_reload()
    await asyncio.wait_for(source.reloader.settled(), 5)
    pump.cancel()
    _, body = await _get(base + "/config")
    (issue,) = body["last_reload_error"]["issues"]
    assert ":8:11: routes[0].name: " in issue
    assert body["reloads"] == {"success": 1, "failure": 1}


async def test_routes_lists_the_active_routes_in_config_vocabulary(
    admin: tuple[str, LocalSource],
) -> None:
    base, _ = admin
    _, body = await _get(base + "/routes")
    (route,) = body["routes"]
    assert route["name"] == "shop"
    assert route["hostnames"] == ["shop.example.com"]
    assert route["rules"][0]["backendRefs"] == [{"name": "api", "weight": 1, "filters": None}]


async def test_endpoints_show_locality_health_drain_and_in_flight(
    admin: tuple[str, LocalSource],
) -> None:
    base, source = admin
    source.state.set_unhealthy("b/127.0.0.2:30080", True)
    source.state.in_flight["a/127.0.0.1:30080"] = 3
    status, body = await _get(base + "/drain?endpoint=a/127.0.0.1:30080", "POST")
    assert status == 200 and body == {"endpoint": "a/127.0.0.1:30080", "draining": True}
    _, body = await _get(base + "/endpoints")
    a, b = body["backends"]["api"]
    assert (a["key"], a["cluster"], a["zone"]) == ("a/127.0.0.1:30080", "a", "eu-1a")
    assert a["draining"] and not a["available"] and a["in_flight"] == 3 and a["healthy"]
    assert not b["healthy"] and not b["available"]
    assert a["locality_level"] == 0 and b["locality_level"] == 1
    assert a["locality"] and a["locality"] != b["locality"]
    await _get(base + "/drain?endpoint=a/127.0.0.1:30080&undo=1", "POST")
    assert "a/127.0.0.1:30080" not in source.state.draining


async def test_explain_walks_the_real_table(admin: tuple[str, LocalSource]) -> None:
    base, _ = admin
    status, body = await _get(
        base + "/explain?request=GET%20http://shop.example.com/cart&from=10.1.2.3"
    )
    assert status == 200
    assert body["request"] == {
        "method": "GET",
        "host": "shop.example.com",
        "path": "/cart",
        "query": "",
        "from": "10.1.2.3",
    }
    assert body["route"] == "shop" and body["backend"] == "api"
    assert body["endpoint"]["key"] == "a/127.0.0.1:30080"  # own zone first
    assert body["steps"]
    _, miss = await _get(base + "/explain?request=GET%20http://other.example.com/")
    assert miss["endpoint"] is None and miss["error"] == "no_route"
    status, _ = await _get(base + "/explain")
    assert status == 400


async def test_metrics_exposes_totals(admin: tuple[str, LocalSource]) -> None:
    base, source = admin
    for _ in range(4):
        source.stats.record("shop", "api", "a", 200, 0.001)
    status, text = await _get(base + "/metrics")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    key = (("backend", "api"), ("cluster", "a"), ("code", "200"), ("route", "shop"))
    assert samples[("portway_requests_total", key)] == 4
    assert samples[("portway_config_reloads_total", (("result", "success"),))] == 1


async def test_draining_a_key_the_table_does_not_have_is_404_and_changes_nothing(
    admin: tuple[str, LocalSource],
) -> None:
    base, source = admin
    status, body = await _get(base + "/drain?endpoint=nonexistent", "POST")
    assert status == 404
    assert body == {
        "error": "no endpoint 'nonexistent' in the active routing table (see /endpoints)"
    }
    assert source.state.draining == set()


async def test_an_unknown_backend_or_path_is_404_in_json(admin: tuple[str, LocalSource]) -> None:
    base, _ = admin
    status, body = await _get(base + "/endpoints?backend=apj")
    assert status == 404
    assert body["error"] == "no backend 'apj' in the active routing table; did you mean 'api'?"
    status, body = await _get(base + "/endpoints?backend=api")
    assert status == 200 and list(body["backends"]) == ["api"]
    status, body = await _get(base + "/endpiont")
    assert status == 404 and body["error"] == "no such admin path '/endpiont'"
    assert "/endpoints" in body["paths"]
    status, body = await _get(base + "/drain?endpoint=a/127.0.0.1:30080")  # GET, not POST
    assert status == 405 and body["allowed"] == ["POST"]


@pytest.mark.parametrize(
    ("path", "method", "error"),
    [
        ("/drain", "POST", "give endpoint=KEY (as /endpoints lists them)"),
        (
            "/drain?endpoint=a/127.0.0.1:30080&undo=yes",
            "POST",
            "undo='yes': write undo=1 or undo=0",
        ),
        (
            "/drain?endpont=a/127.0.0.1:30080",
            "POST",
            "unknown parameter 'endpont'; did you mean 'endpoint'? (/drain takes: endpoint, undo)",
        ),
        (
            "/explain?request=FOO",
            "GET",
            "request is 'METHOD URL', e.g. request=GET%20http://shop.example/",
        ),
        (
            "/explain?request=GET%20shop.example.com/",
            "GET",
            "request URL 'shop.example.com/' is not absolute (http:// or https:// and a host)",
        ),
        (
            "/explain?request=GET%20http://shop.example.com/&from=nowhere",
            "GET",
            "from='nowhere' is not an IP address",
        ),
        (
            "/explain?request=GET%20http://shop.example.com/&header=x-no-colon",
            "GET",
            "header='x-no-colon': write header=name:value",
        ),
        ("/metrics?endpoints=all", "GET", "endpoints='all': write endpoints=1 or endpoints=0"),
        ("/readyz?verbose=1", "GET", "unknown parameter 'verbose' (/readyz takes: no parameters)"),
    ],
)
async def test_malformed_requests_are_400_saying_what_is_wrong(
    admin: tuple[str, LocalSource], path: str, method: str, error: str
) -> None:
    base, source = admin
    status, body = await _get(base + path, method)
    assert (status, body) == (400, {"error": error})
    assert source.state.draining == set()


async def test_readyz_is_503_while_draining(admin: tuple[str, LocalSource]) -> None:
    base, source = admin
    assert (await _get(base + "/readyz"))[0] == 200
    source.draining = True
    status, body = await _get(base + "/readyz")
    assert status == 503 and body["not_draining"] is False and body["ready"] is False


async def test_the_rollout_endpoints_are_served_when_the_process_mounts_them(
    tmp_path: Path,
) -> None:
    """The rollouts sit above ops: the runtime mounts their routes; the API alone has none."""
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG.format(route="shop"))
    reloader = Reloader(path, lambda t, a: None, debounce_s=0.01)
    await reloader.load_initial()
    source = LocalSource(reloader)
    source.rollouts = RolloutRunner(reloader)
    bare, mounted = _free_port(), _free_port()
    runners = [
        await start_admin(source, "127.0.0.1", bare),
        await start_admin(source, "127.0.0.1", mounted, mounted=(RolloutApi(source),)),
    ]
    try:
        status, body = await _get(f"http://127.0.0.1:{bare}/rollouts")
        assert status == 404 and body["error"] == "no such admin path '/rollouts'"
        status, body = await _get(f"http://127.0.0.1:{mounted}/rollouts")
        assert status == 200 and body["rollouts"] == [] and body["driving"] is False
        status, _ = await _get(f"http://127.0.0.1:{mounted}/healthz")
        assert status == 200
    finally:
        for runner in runners:
            await runner.cleanup()
