"""`portway doctor --gateway-admin`: a real `portway gateway` process reading the files registry
the cluster's record is in; doctor compares the gateway's /endpoints with the cluster."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from conftest import NODES, SERVICES, SLICES
from kube_emulator import KubeEmulator
from test_doctor_cluster import (
    Doctor,
    NodePorts,
    doctor,
    kubeconfig,
    node,
    pods_slice,
    publish_as_controller,
    shared_port,
    steps,
    web_service,
)

pytestmark = pytest.mark.e2e
__all__ = ["doctor", "kubeconfig"]  # fixtures shared with test_doctor_cluster
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_config(registry: Path, port: int, admin_port: int) -> str:
    return f"""\
version: 1
listeners:
  - {{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}
registry: {{type: files, path: {registry}, debounce: 20ms}}
routes:
  - name: shop
    rules:
      - backendRefs: [{{name: shop}}]
backends:
  - name: shop
    service: {{namespace: shop, name: web, port: http}}
admin: {{address: 127.0.0.1, port: {admin_port}}}
"""


async def endpoints_seen(admin: str, count: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(admin + "/endpoints") as resp:
                    if resp.status == 200:
                        body = await resp.json()
                        if len(body.get("backends", {}).get("shop", [])) == count:
                            return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"the gateway did not list {count} endpoints in {timeout_s} s")


async def test_gateway_routing_to_the_same_endpoints_and_falling_behind(
    emulator: KubeEmulator, doctor: Doctor, tmp_path: Path
) -> None:
    emulator.put(NODES, node(0))
    emulator.put(NODES, node(1))
    node_port, socks = shared_port()
    ports = NodePorts()
    await ports.open(socks)
    reg = tmp_path / "reg"
    reg.mkdir()
    emulator.put(SERVICES, web_service(node_port))
    emulator.put(SLICES, pods_slice([1, 1]))
    await publish_as_controller(emulator, reg, published_at=time.time())
    admin_port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(gateway_config(reg, free_port(), admin_port))
    log = (tmp_path / "gateway.log").open("wb")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "portway", "gateway", "--config", str(config), "--workers", "1"]
    proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=ROOT, env=env)
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        await endpoints_seen(admin, 2)
        code, report = await doctor("--gateway-admin", admin, "--cluster", "east")
        gateway = next(s for s in report["steps"] if s["name"] == "gateway")
        assert code == 0, report
        assert gateway["status"] == "ok"
        assert gateway["details"] == ["backend shop: port http: same 2 endpoint(s)"]

        emulator.put(NODES, node(1, unschedulable=True))  # the controller has not caught up
        code, report = await doctor("--gateway-admin", admin, "--cluster", "east")
        gateway = next(s for s in report["steps"] if s["name"] == "gateway")
        assert gateway["status"] == "warn"
        assert "extra [('127.0.0.2'" in gateway["details"][0]

        code, report = await doctor("--gateway-admin", f"http://127.0.0.1:{free_port()}")
        assert steps(report)["gateway"][0] == "fail"
        assert code == 1
    finally:
        ports.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
