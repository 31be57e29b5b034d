"""Hot reload: good configs swap in, bad ones are rejected, bursts compile once."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config.active import ActiveConfig
from gateway.config.errors import ConfigError
from gateway.runtime.reload import Reloader
from portway.telemetry import setup_logging


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """setup_logging changes the root logger; give the next test the one it had."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


CONFIG = """\
version: 1
listeners:
  - name: web
    protocol: HTTP
    port: {port}
routes:
  - name: {route}
    listeners: [web]
    rules:
      - backendRefs: [{{name: api}}]
backends:
  - name: api
    endpoints:
      - {{address: 127.0.0.1, port: 9}}
"""

BROKEN = CONFIG.replace("protocol: HTTP", "protocol: GOPHER")


class CompileLog:
    """Stands in for `compile_table` where only the pipeline is under test."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any, int]] = []

    def __call__(self, config: Any, records: Any, *, version: str, seed: int) -> Any:
        number = int(version.rsplit(".", 1)[1])
        self.calls.append((config, records, number))
        return ("table", number, config.routes[0].name)


def _write(path: Path, route: str = "one", port: int = 18080) -> None:
    path.write_text(CONFIG.format(route=route, port=port))


async def _reloader(tmp_path: Path, **kw: Any) -> tuple[Reloader, CompileLog, list[Any]]:
    path = tmp_path / "gw.yaml"
    _write(path)
    compiled = CompileLog()
    swaps: list[Any] = []
    reloader = Reloader(
        path, lambda t, a: swaps.append((t, a)), compile_fn=compiled, debounce_s=0.01, **kw
    )
    await reloader.load_initial()
    return reloader, compiled, swaps


async def test_initial_load_compiles_and_swaps(tmp_path: Path) -> None:
    reloader, compiled, swaps = await _reloader(tmp_path)
    assert len(compiled.calls) == 1
    table, active = swaps[0]
    assert table == ("table", 1, "one")
    assert isinstance(active, ActiveConfig) and len(active.version) == 12
    assert active.source.endswith("gw.yaml")
    assert reloader.stats.success == 1 and reloader.stats.last_success_s > 0


async def test_invalid_initial_config_raises(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(BROKEN.format(route="x", port=1))
    reloader = Reloader(path, lambda t, a: None, compile_fn=CompileLog())
    with pytest.raises(ConfigError):
        await reloader.load_initial()
    assert reloader.stats.failure == 1


async def test_changed_file_swaps_new_table(tmp_path: Path) -> None:
    reloader, compiled, swaps = await _reloader(tmp_path)
    pump = asyncio.create_task(reloader.run())
    try:
        _write(reloader.path, route="two")
        reloader.request_reload()
        await asyncio.wait_for(reloader.settled(), 5)
        assert swaps[-1][0] == ("table", 2, "two")
        assert reloader.stats.success == 2
        reloader.request_reload()  # unchanged digest: no compile
        await asyncio.wait_for(reloader.settled(), 5)
        assert len(compiled.calls) == 2
    finally:
        pump.cancel()


async def test_invalid_reload_keeps_last_good_and_logs_file_line_col(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging(logging.INFO, stream)
    reloader, _compiled, swaps = await _reloader(tmp_path)
    good = reloader.active
    pump = asyncio.create_task(reloader.run())
    try:
        reloader.path.write_text(BROKEN.format(route="two", port=18080))
        reloader.request_reload()
        await asyncio.wait_for(reloader.settled(), 5)
    finally:
        pump.cancel()
    assert reloader.active is good and len(swaps) == 1
    assert reloader.stats.failure == 1
    assert reloader.last_failure is not None
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    (rejected,) = [x for x in lines if x["msg"].startswith("config rejected")]
    assert rejected["level"] == "error"
    assert any(issue.startswith(f"{reloader.path}:4:15: ") for issue in rejected["issues"])
    assert rejected["active_version"] == good.version  # type: ignore[union-attr]


async def test_burst_of_registry_changes_compiles_once(tmp_path: Path) -> None:
    reloader, compiled, _swaps = await _reloader(tmp_path)
    pump = asyncio.create_task(reloader.run())
    try:
        for i in range(20):
            reloader.on_changes({"k": i})  # type: ignore[dict-item]
        await asyncio.wait_for(reloader.settled(), 5)
    finally:
        pump.cancel()
    assert len(compiled.calls) == 2
    assert compiled.calls[-1][1] == [19]
    assert reloader.registry_synced
    assert reloader.stats.success == 1  # records do not count as config reloads


REGISTRY_CONFIG = """\
version: 1
listeners:
  - {name: web, protocol: HTTP, port: 18080}
routes:
  - name: shop
    hostnames: [shop.example.com]
    rules:
      - backendRefs: [{name: shop}]
  - name: api
    hostnames: [api.example.com]
    rules:
      - backendRefs: [{name: api}]
backends:
  - name: shop
    service: {namespace: shop, name: web, port: http}
  - name: api
    service: {namespace: shop, name: api, port: http}
"""


def _record(service: str, cluster: str, address: str) -> Any:
    from portway.model import Node, ServicePort, ServiceRecord

    return ServiceRecord(
        cluster=cluster,
        namespace="shop",
        service=service,
        ports=(ServicePort("http", 80, 30080),),
        nodes=(Node("n1", address),),
    )


async def test_registry_changes_update_the_table_in_force_and_routes_stay_shared(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(REGISTRY_CONFIG)
    swaps: list[Any] = []
    reloader = Reloader(path, lambda t, a: swaps.append(t), debounce_s=0.01)
    await reloader.load_initial()
    assert not reloader.registry_synced, "no table from the registry serves yet"
    first = reloader.table
    pump = asyncio.create_task(reloader.run())
    try:
        web, api = _record("web", "a", "10.0.0.1"), _record("api", "a", "10.0.0.2")
        reloader.on_changes({web.key: web, api.key: api})
        await asyncio.wait_for(reloader.settled(), 5)
        synced = reloader.table
        assert reloader.registry_synced
        assert synced.routes is first.routes
        assert [e.address for e in synced.backends["shop"].endpoints] == ["10.0.0.1"]
        moved = _record("web", "a", "10.0.0.9")
        reloader.on_changes({moved.key: moved})
        await asyncio.wait_for(reloader.settled(), 5)
        latest = reloader.table
        assert [e.address for e in latest.backends["shop"].endpoints] == ["10.0.0.9"]
        assert latest.backends["api"] is synced.backends["api"]
        assert latest.routes is first.routes
        assert reloader.records == {moved.key: moved, api.key: api}
        reloader.on_changes({api.key: None})
        await asyncio.wait_for(reloader.settled(), 5)
        assert reloader.table.backends["api"].endpoints == ()
        path.write_text(REGISTRY_CONFIG.replace("api.example.com", "api2.example.com"))
        reloader.request_reload()
        await asyncio.wait_for(reloader.settled(), 5)
        assert reloader.table.routes is not first.routes, "a config change recompiles routes"
        assert [e.address for e in reloader.table.backends["shop"].endpoints] == ["10.0.0.9"]
        assert swaps[-1] is reloader.table
    finally:
        pump.cancel()
