"""`portway doctor` against the emulated apiserver, real loopback NodePorts and healthz, a files
registry: what an operator sees when a Service works, and when it does not.

Nodes are 127.0.0.1 and 127.0.0.2 (named "localhost" and "127.0.0.2", so their names
resolve without a DNS server); a real TCP listener on each address stands in for
kube-proxy's node:nodePort, and a real HTTP server on the healthCheckNodePort answers like
kube-proxy's healthz. The command runs in a worker thread with its own event loop, as from a
shell, while the emulator and the listeners serve on the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import NODES, SERVICES, SLICES
from kube_emulator import Apiserver, KubeEmulator

from controller.derive import derive
from controller.kube_objects import endpoint_slice_info, node_info, service_info
from controller.objects import ClusterSettings, PortRange
from portway.cli import main
from portway.registry.files import FilesRegistry

POLICIES = "networking.k8s.io/v1/networkpolicies"
PODS = "v1/pods"
ADDRESSES = ("127.0.0.1", "127.0.0.2")
NAMES = ("localhost", "127.0.0.2")
RANGE = "1024-65535"


def shared_port() -> tuple[int, list[socket.socket]]:
    """A port number free on both loopback addresses, with the bound sockets."""
    for _ in range(50):
        first = socket.socket()
        first.bind((ADDRESSES[0], 0))
        port = first.getsockname()[1]
        second = socket.socket()
        try:
            second.bind((ADDRESSES[1], port))
        except OSError:
            first.close()
            second.close()
            continue
        return port, [first, second]
    raise RuntimeError("no port free on both loopback addresses")


class NodePorts:
    """Listening node:nodePort sockets (accept and close) on the given addresses."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []

    async def open(self, socks: list[socket.socket]) -> None:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        for s in socks:
            self.servers.append(await asyncio.start_server(accept, sock=s))

    def close(self) -> None:
        for s in self.servers:
            s.close()


async def healthz_servers(socks: list[socket.socket], counts: list[int]) -> list[web.AppRunner]:
    """kube-proxy's healthCheckNodePort server: 200 with local endpoints, 503 without."""
    runners = []
    for sock, count in zip(socks, counts, strict=True):

        async def answer(request: web.Request, count: int = count) -> web.Response:
            body = {"service": {"namespace": "shop", "name": "web"}, "localEndpoints": count}
            return web.json_response(body, status=200 if count else 503)

        app = web.Application()
        app.router.add_get("/healthz", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        runners.append(runner)
    return runners


def node(i: int, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": NAMES[i], "labels": {"topology.kubernetes.io/zone": f"z{i}"}},
        "spec": spec,
        "status": {
            "addresses": [{"type": "InternalIP", "address": ADDRESSES[i]}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def web_service(node_port: int, *, policy: str = "Cluster", hc: int | None = None) -> dict:
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "nodePort": node_port, "protocol": "TCP"}],
        "externalTrafficPolicy": policy,
    }
    if hc is not None:
        spec["healthCheckNodePort"] = hc
    return {
        "metadata": {
            "namespace": "shop",
            "name": "web",
            "annotations": {"portway.io/export": "true"},
        },
        "spec": spec,
    }


def pods_slice(per_node: list[int]) -> dict[str, Any]:
    endpoints = []
    for i, count in enumerate(per_node):
        for k in range(count):
            endpoints.append(
                {
                    "addresses": [f"10.1.{i}.{k + 1}"],
                    "nodeName": NAMES[i],
                    "conditions": {"ready": True},
                    "targetRef": {"kind": "Pod", "name": f"web-{i}-{k}"},
                }
            )
    return {
        "metadata": {
            "namespace": "shop",
            "name": "web-abc",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
    }


def pod(name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "shop", "name": name, "labels": {"app": "web"}}}


@pytest.fixture
def kubeconfig(apiserver: Apiserver, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emu", "cluster": {"server": apiserver.url}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "u"}}],
                "current-context": "emu",
            }
        )
    )
    return path


@pytest.fixture
async def cluster(emulator: KubeEmulator) -> AsyncIterator[KubeEmulator]:
    emulator.declare(POLICIES, PODS)
    emulator.put(NODES, node(0))
    emulator.put(NODES, node(1))
    emulator.put(PODS, pod("web-0"))
    yield emulator


Doctor = Callable[..., Any]


@pytest.fixture
def doctor(kubeconfig: Path) -> Doctor:
    async def run(*extra: str) -> tuple[int, dict[str, Any]]:
        argv = ["doctor", "shop/web", "--kubeconfig", str(kubeconfig), "--json", "--timeout", "2"]
        argv += ["--node-port-range", RANGE, *extra]
        out = Path(str(kubeconfig) + ".out")
        with out.open("w") as sink, contextlib.redirect_stdout(sink):
            code = await asyncio.to_thread(main, argv)
        return code, json.loads(out.read_text())

    return run


def steps(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {s["name"]: (s["status"], s["summary"]) for s in report["steps"]}


async def publish_as_controller(emu: KubeEmulator, directory: Path, published_at: float) -> None:
    """Write the record the controller would write for the cluster as it is now."""
    settings = ClusterSettings(cluster="east", node_port_range=PortRange.parse(RANGE))
    d = derive(
        settings,
        [service_info(s) for s in emu.items(SERVICES)],
        [node_info(n) for n in emu.items(NODES)],
        [endpoint_slice_info(s) for s in emu.items(SLICES)],
        now=published_at,
    )
    reg = FilesRegistry(str(directory))
    try:
        for rec in d.records().values():
            await reg.publish(rec, ttl_s=None)
            await reg.abandon(rec.key)
    finally:
        await reg.close()


async def test_healthy_local_service_every_step_ok(
    cluster: KubeEmulator, doctor: Doctor, tmp_path: Path
) -> None:
    node_port, node_socks = shared_port()
    hc, hc_socks = shared_port()
    ports = NodePorts()
    await ports.open(node_socks)
    runners = await healthz_servers(hc_socks, [2, 1])
    try:
        cluster.put(SERVICES, web_service(node_port, policy="Local", hc=hc))
        cluster.put(SLICES, pods_slice([2, 1]))
        await publish_as_controller(cluster, tmp_path / "reg", published_at=0.0)
        code, report = await doctor("--registry", "files", "--dir", str(tmp_path / "reg"))
    finally:
        ports.close()
        for r in runners:
            await r.cleanup()
    got = steps(report)
    assert code == 0, report
    assert report["cluster"] == "east"
    for name in ("service", "endpoints", "nodes", "nodeports", "health-check", "dns", "registry"):
        assert got[name][0] == "ok", (name, got[name])
    assert got["network-policies"][0] == "ok"
    assert got["nodes"][1] == "2 of 2 node(s) eligible"
    assert got["nodeports"][1] == "2 of 2 node:nodePort connect"
    assert got["health-check"][1] == "2 of 2 node(s) answer as expected"
    assert "matches the cluster" in got["registry"][1]
    assert got["gateway"][0] == "skip"


async def test_broken_service_fails_with_reasons(cluster: KubeEmulator, doctor: Doctor) -> None:
    node_port, node_socks = shared_port()
    ports = NodePorts()
    await ports.open(node_socks[:1])  # nothing listens on the second node
    node_socks[1].close()
    try:
        cluster.put(SERVICES, web_service(node_port))
        cluster.put(SLICES, pods_slice([1, 0]))
        cluster.put(NODES, node(1, unschedulable=True))
        cluster.put(
            POLICIES,
            {
                "metadata": {"namespace": "shop", "name": "pods-only"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "ingress": [{"from": [{"podSelector": {}}]}],
                },
            },
        )
        code, report = await doctor()
    finally:
        ports.close()
    got = steps(report)
    assert code == 1
    assert got["nodes"] == ("warn", "1 of 2 node(s) eligible")
    nodes = next(s for s in report["steps"] if s["name"] == "nodes")
    assert any("127.0.0.2 (127.0.0.2): unschedulable" in d for d in nodes["details"])
    assert got["nodeports"][0] == "ok"  # only the eligible node is probed
    assert got["network-policies"][0] == "fail"
    assert "admits pods/namespaces only" in got["network-policies"][1]


async def test_unreachable_nodeport_and_unexported_service(
    cluster: KubeEmulator, doctor: Doctor
) -> None:
    node_port, node_socks = shared_port()
    for s in node_socks:
        s.close()
    svc = web_service(node_port)
    cluster.put(SERVICES, svc)
    cluster.put(SLICES, pods_slice([1, 1]))
    code, report = await doctor()
    assert code == 1
    assert steps(report)["nodeports"][0] == "fail"
    svc["metadata"]["annotations"] = {}
    cluster.put(SERVICES, svc)
    code, report = await doctor()
    assert code == 1
    assert steps(report)["service"][0] == "fail"
    assert "not exported" in steps(report)["service"][1]


async def test_missing_service_fails_and_no_record_is_expected(
    cluster: KubeEmulator, doctor: Doctor, tmp_path: Path
) -> None:
    (tmp_path / "reg").mkdir()
    code, report = await doctor("--registry", "files", "--dir", str(tmp_path / "reg"))
    assert code == 1
    assert steps(report)["service"] == ("fail", "Service shop/web does not exist")
    assert steps(report)["registry"] == ("ok", "no record, as expected (not published)")


async def test_unreachable_apiserver_fails(apiserver: Apiserver, doctor: Doctor) -> None:
    await apiserver.down()
    code, report = await doctor("--timeout", "1")
    assert code == 1
    assert steps(report)["service"][1].startswith("cannot read from the apiserver")
    await apiserver.up()


async def test_registry_record_behind_the_cluster_warns_and_absent_fails(
    cluster: KubeEmulator, doctor: Doctor, tmp_path: Path
) -> None:
    node_port, node_socks = shared_port()
    ports = NodePorts()
    await ports.open(node_socks)
    reg = tmp_path / "reg"
    try:
        cluster.put(SERVICES, web_service(node_port))
        cluster.put(SLICES, pods_slice([1, 1]))
        await publish_as_controller(cluster, reg, published_at=0.0)
        cluster.put(NODES, node(1, unschedulable=True))  # cordoned after publishing
        code, report = await doctor("--registry", "files", "--dir", str(reg))
        registry = next(s for s in report["steps"] if s["name"] == "registry")
        assert code == 0
        assert registry["status"] == "warn"
        assert registry["details"] == ["node 127.0.0.2: published ('127.0.0.2', True, 0), now None"]
        for f in reg.iterdir():
            f.unlink()
        code, report = await doctor("--registry", "files", "--dir", str(reg))
        assert code == 1
        assert steps(report)["registry"][0] == "fail"
        code, report = await doctor("--registry", "files", "--dir", str(reg), "--cluster", "west")
        assert steps(report)["registry"][0] == "fail"
    finally:
        ports.close()


@pytest.mark.parametrize(
    "argv",
    [
        ["doctor", "shop"],
        ["doctor", "shop/web/x"],
        ["doctor", "shop/web", "--tier-range", "web"],
        ["doctor", "shop/web", "--address-preference", "Nope"],
        ["doctor", "shop/web", "--registry", "files"],
        ["doctor", "shop/web", "--kubeconfig", "/nonexistent/kubeconfig"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "portway doctor:" in capsys.readouterr().err


async def test_readable_report(cluster: KubeEmulator, kubeconfig: Path, tmp_path: Path) -> None:
    node_port, node_socks = shared_port()
    for s in node_socks:
        s.close()
    cluster.put(SERVICES, web_service(node_port))
    cluster.put(SLICES, pods_slice([1, 1]))
    out = tmp_path / "out.txt"
    argv = ["doctor", "shop/web", "--kubeconfig", str(kubeconfig), "--timeout", "1"]
    argv += ["--node-port-range", RANGE]
    with out.open("w") as sink, contextlib.redirect_stdout(sink):
        code = await asyncio.to_thread(main, argv)
    text = out.read_text()
    assert code == 1
    assert "portway doctor shop/web" in text
    assert "failed: nodeports" in text


async def test_unreachable_registry_fails(cluster: KubeEmulator, doctor: Doctor) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    code, report = await doctor("--registry", "etcd", "--etcd", url, "--timeout", "1")
    assert code == 1
    assert steps(report)["registry"][0] == "fail"
    assert steps(report)["registry"][1].startswith("etcd: ")
