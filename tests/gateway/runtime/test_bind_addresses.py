"""listeners[].address and admin.address are where the gateway binds, and only there."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
ROOT = Path(__file__).resolve().parents[3]


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def connects(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((address, port)) == 0


def test_listener_and_admin_bind_the_configured_addresses(tmp_path: Path) -> None:
    port, admin = free_port("127.0.0.2"), free_port("127.0.0.3")
    config = tmp_path / "gw.yaml"
    config.write_text(
        f"""\
version: 1
listeners: [{{name: web, protocol: HTTP, address: 127.0.0.2, port: {port}}}]
routes: [{{name: r, rules: [{{backendRefs: [{{name: b}}]}}]}}]
backends: [{{name: b, endpoints: [{{address: 127.0.0.1, port: {free_port("127.0.0.1")}}}]}}]
admin: {{address: 127.0.0.3, port: {admin}}}
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "portway", "gateway", "--config", str(config), "--workers", "1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 20
        while not (connects("127.0.0.2", port) and connects("127.0.0.3", admin)):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert not connects("127.0.0.1", port)
        assert not connects("127.0.0.1", admin)
    finally:
        proc.terminate()
        proc.wait(15)
