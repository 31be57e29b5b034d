"""Worker runtime pieces that need no listener: drain waiting, reports, helpers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

from gateway.config.loader import load_config_text
from gateway.context import GatewayContext, RequestLog
from gateway.http.filters.mirror import MIRRORS
from gateway.runtime.server import ServerOptions, Worker, needs_registry, pool_connections

STATIC = """\
version: 1
routes:
  - name: r
    rules: [{backendRefs: [{name: api}]}]
backends:
  - name: api
    endpoints: [{address: 127.0.0.1, port: 9}]
"""


def _worker(tmp_path: Path) -> Worker:
    path = tmp_path / "gw.yaml"
    path.write_text(STATIC)
    return Worker(ServerOptions(config_path=str(path)), serve_admin=False)


def test_needs_registry_only_when_a_backend_names_a_service() -> None:
    assert not needs_registry(load_config_text(STATIC))
    with_service = STATIC.replace(
        "endpoints: [{address: 127.0.0.1, port: 9}]",
        "service: {namespace: shop, name: api, port: http}",
    )
    assert needs_registry(load_config_text(with_service))


def test_pool_connections_splits_idle_and_active() -> None:
    pools = SimpleNamespace(
        pools={
            "a": SimpleNamespace(idle=[1, 2], total=5),
            "b": SimpleNamespace(idle=[], total=1),
        }
    )
    assert pool_connections(pools) == {"idle": 2, "active": 4}
    assert pool_connections(None) == {"idle": 0, "active": 0}


async def test_drain_waits_for_in_flight_requests(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    worker.ctx = GatewayContext(table=None, settings=load_config_text(STATIC).gateway)
    log = RequestLog()
    token = worker.observer.begin(log, {})
    asyncio.get_running_loop().call_later(0.3, worker.observer.end, token, log)
    started = time.monotonic()
    await worker.drain(timeout_s=5)
    took = time.monotonic() - started
    assert worker.ctx.draining
    assert worker.observer.in_flight == 0
    assert 0.3 <= took < 1.5


async def test_drain_gives_up_at_the_deadline(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    worker.observer.begin(RequestLog(), {})
    started = time.monotonic()
    await worker.drain(timeout_s=0.3)
    assert 0.3 <= time.monotonic() - started < 1.5
    assert worker.observer.in_flight == 1


async def test_report_carries_metrics_and_endpoint_state(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    worker.ctx = GatewayContext(table=None, settings=load_config_text(STATIC).gateway)
    worker.ctx.state.set_unhealthy("c/1.2.3.4:5", True)
    log = RequestLog(route_name="r", backend_name="api", upstream_cluster="c", response_code=200)
    worker.observer.end(worker.observer.begin(log, {}), log)
    (report,) = await worker.reports()
    assert report["endpoints"]["unhealthy"] == ["c/1.2.3.4:5"]
    assert report["metrics"]["requests"] == [["r", "api", "c", 200, 1]]


class _Tunnel:
    """Stands for an open TCP proxy connection in `ctx.tunnels`."""

    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


async def test_drain_waits_for_open_tcp_connections(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    worker.ctx = GatewayContext(table=None, settings=load_config_text(STATIC).gateway)
    tunnel = _Tunnel()
    worker.ctx.tunnels.add(tunnel)
    asyncio.get_running_loop().call_later(0.3, worker.ctx.tunnels.discard, tunnel)
    started = time.monotonic()
    await worker.drain(timeout_s=5)
    assert 0.3 <= time.monotonic() - started < 1.5
    assert not tunnel.aborted


async def test_drain_cuts_tcp_connections_still_open_at_the_deadline(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    worker.ctx = GatewayContext(table=None, settings=load_config_text(STATIC).gateway)
    tunnel = _Tunnel()
    worker.ctx.tunnels.add(tunnel)
    started = time.monotonic()
    await worker.drain(timeout_s=0.3)
    assert 0.3 <= time.monotonic() - started < 1.5
    assert tunnel.aborted


async def test_report_carries_the_mirror_counts(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    counts = MIRRORS.counts_for("report-test/0", "shadow")
    counts.dropped += 1
    (report,) = await worker.reports()
    rows = {tuple(row[:3]): row[3] for row in report["metrics"]["mirrors"]}
    assert rows[("report-test/0", "shadow", "dropped")] == counts.dropped
    assert rows[("report-test/0", "shadow", "sent")] == counts.sent
