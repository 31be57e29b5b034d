"""Emulated clusters -> real controller processes -> real etcd -> a real gateway process.

Shared by tests/controller/test_controller_e2e.py and benchmarks/propagation.py.
Every emulated node is a real HTTP server on its own loopback address
(127.0.<cluster>.<node>) listening on the Service's nodePort, so a request the
gateway routes by a published record lands on the node the record names.
Controllers and the gateway are `python -m portway ...` subprocesses; the
emulated apiservers run in the caller's event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from kube_emulator import Apiserver, KubeEmulator

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE, SERVICE = "shop", "web"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_node_port(hosts: list[str]) -> int:
    """A port in the default NodePort range that is free on every one of `hosts`."""
    for _ in range(200):
        port = random.randint(30000, 32767)
        try:
            for host in hosts:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free NodePort")


def node_object(name: str, ip: str, *, unschedulable: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "z1"}},
        "spec": {"unschedulable": unschedulable},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def service_object(node_port: int, *, exported: bool = True) -> dict[str, Any]:
    annotations = {"portway.io/export": "true"} if exported else {}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": NAMESPACE, "name": SERVICE, "annotations": annotations},
        "spec": {
            "type": "NodePort",
            "externalTrafficPolicy": "Cluster",
            "ports": [{"name": "http", "port": 80, "nodePort": node_port, "protocol": "TCP"}],
        },
    }


@dataclass
class Cluster:
    """An emulated cluster whose nodes serve the Service's nodePort for real."""

    name: str
    index: int
    nodes: int
    node_port: int = 0
    emulator: KubeEmulator = field(default_factory=KubeEmulator)
    apiserver: Apiserver | None = None
    runners: list[web.AppRunner] = field(default_factory=list)

    def ip(self, node: int) -> str:
        return f"127.0.{self.index}.{node + 1}"

    def node_name(self, node: int) -> str:
        return f"{self.name}-n{node + 1}"

    async def start(self, node_port: int) -> Cluster:
        self.node_port = node_port
        await self.emulator.__aenter__()
        self.emulator.declare("v1/services", "discovery.k8s.io/v1/endpointslices")
        self.emulator.declare("coordination.k8s.io/v1/leases", "v1/events")
        self.emulator.declare("v1/nodes", namespaced=False)
        for i in range(self.nodes):
            self.emulator.put("v1/nodes", node_object(self.node_name(i), self.ip(i)))
            self.runners.append(
                await _serve(self.ip(i), node_port, f"{self.name}/{self.node_name(i)}")
            )
        self.emulator.put("v1/services", service_object(node_port))
        self.apiserver = Apiserver(self.emulator)
        await self.apiserver.up()
        return self

    def cordon(self, node: int, cordoned: bool) -> None:
        self.emulator.put(
            "v1/nodes", node_object(self.node_name(node), self.ip(node), unschedulable=cordoned)
        )

    def export(self, exported: bool) -> None:
        self.emulator.put("v1/services", service_object(self.node_port, exported=exported))

    def kubeconfig(self, directory: Path) -> Path:
        assert self.apiserver is not None
        path = directory / f"kubeconfig-{self.name}"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "emu",
                    "clusters": [{"name": "emu", "cluster": {"server": self.apiserver.url}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "u"}}],
                }
            )
        )
        return path

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        if self.apiserver is not None:
            await self.apiserver.down()
        await self.emulator.__aexit__(None, None, None)


async def _serve(host: str, port: int, name: str) -> web.AppRunner:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=name, headers={"x-served-by": name})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


class Process:
    """A `python -m portway ...` subprocess with its output in a log file."""

    def __init__(self, name: str, argv: list[str], directory: Path) -> None:
        self.name = name
        self.log_path = directory / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "portway", *argv], stdout=log, stderr=log, env=env, cwd=ROOT
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, then wait without blocking the loop (it serves the emulated apiserver)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class ControllerProcess(Process):
    """`portway controller` for one emulated cluster; `replica` names its Lease identity."""

    def __init__(
        self,
        cluster: Cluster,
        etcd: list[str],
        directory: Path,
        replica: int,
        *,
        lease_s: float = 3.0,
        ttl_s: float = 5.0,
    ) -> None:
        self.identity = f"{cluster.name}-{replica}"
        self.admin = f"http://127.0.0.1:{free_port()}"
        argv = [
            "controller", "--cluster", cluster.name, "--region", "r1",
            "--registry", "etcd", "--kubeconfig", str(cluster.kubeconfig(directory)),
            "--admin", self.admin.removeprefix("http://"), "--identity", self.identity,
            "--lease-duration", str(lease_s), "--ttl", str(ttl_s),
        ]  # fmt: skip
        for url in etcd:
            argv += ["--etcd", url]
        super().__init__(f"controller-{self.identity}", argv, directory)

    async def readyz(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """Its /readyz body ({} while it cannot be asked)."""
        try:
            async with http.get(self.admin + "/readyz") as resp:
                body: dict[str, Any] = await resp.json()
                return body
        except (aiohttp.ClientError, ValueError):
            return {}

    async def leading(self, http: aiohttp.ClientSession) -> bool:
        """Whether this replica holds the Lease."""
        return bool((await self.readyz(http)).get("leader"))


def controller_process(
    cluster: Cluster, etcd: list[str], directory: Path, replica: int = 0, **timing: float
) -> ControllerProcess:
    """A controller replica; `timing`: `lease_s` (Lease duration), `ttl_s` (record TTL)."""
    return ControllerProcess(cluster, etcd, directory, replica, **timing)


def gateway_config(*, port: int, admin_port: int, etcd: list[str], clusters: list[str]) -> str:
    return f"""\
version: 1
gateway: {{region: r1, zone: z1}}
registry: {{type: etcd, endpoints: {json.dumps(etcd)}}}
listeners:
  - {{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}
routes:
  - name: shop
    rules:
      - backendRefs: [{{name: web}}]
backends:
  - name: web
    service:
      {{namespace: {NAMESPACE}, name: {SERVICE}, port: http, clusters: {json.dumps(clusters)}}}
admin: {{address: 127.0.0.1, port: {admin_port}}}
"""


class GatewayProcess(Process):
    def __init__(self, directory: Path, etcd: list[str], clusters: list[str]) -> None:
        self.port, self.admin_port = free_port(), free_port()
        config = directory / "gateway.yaml"
        config.write_text(
            gateway_config(port=self.port, admin_port=self.admin_port, etcd=etcd, clusters=clusters)
        )
        super().__init__(
            "gateway", ["gateway", "--config", str(config), "--workers", "1"], directory
        )
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.url = f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, http: aiohttp.ClientSession, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.alive(), self.log()
            try:
                async with http.get(self.admin + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError("gateway not ready:\n" + self.log())

    async def endpoints(self, http: aiohttp.ClientSession) -> set[tuple[str, str]]:
        """(cluster, node) of every ready endpoint of backend `web` in the routing table."""
        async with http.get(self.admin + "/endpoints") as resp:
            body = await resp.json()
        return {
            (ep["cluster"], ep["node"]) for ep in body["backends"].get("web", []) if ep["ready"]
        }
