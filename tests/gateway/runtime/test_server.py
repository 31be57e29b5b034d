"""Worker runtime pieces: drain waiting, and which sockets a started listener runs on."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from gateway.config.loader import load_config_text
from gateway.context import GatewayContext, RequestLog
from gateway.runtime.process import ServerOptions
from gateway.runtime.server import Worker
from tests.gateway.conftest import free_port

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


@pytest.mark.parametrize(("native", "sockets"), [(True, "native"), (False, "loop")])
async def test_listener_start_log_says_which_sockets_serve_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, native: bool, sockets: str
) -> None:
    """Operators read from the log whether a listener runs on the native lane."""
    port = free_port()
    path = tmp_path / "gw.yaml"
    path.write_text(
        STATIC
        + f"listeners: [{{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}]\n"
        + f"gateway: {{nativeSockets: {str(native).lower()}}}\n"
    )
    worker = Worker(ServerOptions(config_path=str(path)), serve_admin=False)
    with caplog.at_level(logging.INFO, logger="portway.gateway.runtime.server"):
        await worker.start()
        try:
            started = [r for r in caplog.records if r.getMessage() == "listener started"]
            assert [getattr(r, "sockets", None) for r in started] == [sockets]
            pools = worker.ctx.pools if worker.ctx is not None else None
            assert (pools is not None and pools.lane is not None) == native
        finally:
            await worker.drain(timeout_s=1)
