"""The gateway child of a drill or demo: started with its log in the workdir, drained, killed."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from portway.drill.gateway_process import GatewayProcess, NotReady

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within the time allowed")


async def test_a_refused_config_exits_and_its_log_says_why(tmp_path: Path) -> None:
    (tmp_path / "gw.yaml").write_text("version: 1\nlisteners: nope\n")
    gateway = GatewayProcess(tmp_path, "gw.yaml")
    assert not gateway.exited and gateway.log_lines() is None

    async def exited() -> bool:
        return gateway.exited

    gateway.start()
    await until(exited)
    assert gateway.proc is not None and gateway.proc.returncode == 1
    assert any("listeners" in line for line in gateway.log_lines() or ())
    await gateway.stop()  # not running: nothing to do


async def test_wait_ready_fails_fast_when_the_gateway_exits_and_names_its_last_log_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "gw.yaml").write_text("version: 1\nlisteners: nope\n")
    gateway = GatewayProcess(tmp_path, "gw.yaml")
    gateway.start()
    started = time.monotonic()
    with pytest.raises(NotReady) as raised:
        await gateway.wait_ready(f"http://127.0.0.1:{free_port()}", timeout_s=30)
    assert raised.value.exited and time.monotonic() - started < 20
    assert raised.value.last_line == (gateway.log_lines() or ["?"])[-1]
    assert raised.value.last_line in str(raised.value)


async def test_stop_drains_a_serving_gateway(tmp_path: Path) -> None:
    port, admin = free_port(), free_port()
    (tmp_path / "gw.yaml").write_text(
        f"""\
version: 1
listeners: [{{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}]
routes: [{{name: r, rules: [{{backendRefs: [{{name: b}}]}}]}}]
backends: [{{name: b, endpoints: [{{address: 127.0.0.1, port: {free_port()}}}]}}]
admin: {{address: 127.0.0.1, port: {admin}}}
"""
    )
    gateway = GatewayProcess(tmp_path, tmp_path / "gw.yaml")
    gateway.start()

    try:
        await gateway.wait_ready(f"http://127.0.0.1:{admin}")
    finally:
        await gateway.stop()
    assert gateway.exited and gateway.proc is not None and gateway.proc.returncode == 0


async def test_a_gateway_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, "gw.yaml")
    gateway.args = [
        sys.executable,
        "-c",
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', file=sys.stderr, flush=True); time.sleep(60)",
    ]
    gateway.start()

    async def up() -> bool:
        return bool(gateway.log_lines())

    await until(up)
    started = time.monotonic()
    await gateway.stop(timeout_s=0.3)
    assert gateway.proc is not None and gateway.proc.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5
