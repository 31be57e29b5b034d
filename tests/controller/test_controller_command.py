"""`portway controller`: every flag reaches the runtime; --print; the serving process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from conftest import LEASES, NODES, SERVICES, eventually, node, service
from consul_emulator import ConsulEmulator
from etcd_server import free_port
from kube_emulator import Apiserver, KubeEmulator

from controller.objects import AddressType, PortRange
from portway.cli import build_parser, main
from portway.model import ServiceKey, ServiceRecord
from portway.registry.files import FilesRegistry, read_records

ROOT = Path(__file__).resolve().parents[2]


def args_of(*argv: str):
    return build_parser().parse_args(["controller", "--cluster", "c1", *argv])


def kubeconfig(tmp_path: Path, url: str) -> Path:
    """Two contexts: 'emu' reaches the emulator, the current one reaches nothing."""
    dead = f"http://127.0.0.1:{free_port()}"
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "dead",
                "clusters": [
                    {"name": "emu", "cluster": {"server": url}},
                    {"name": "dead", "cluster": {"server": dead}},
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "emu", "context": {"cluster": "emu", "user": "u"}},
                    {"name": "dead", "context": {"cluster": "dead", "user": "u"}},
                ],
            }
        )
    )
    return path


def test_every_flag_reaches_the_options():
    from portway.commands.controller import options_from_args

    o = options_from_args(
        args_of(
            "--region", "eu",
            "--address-preference", "InternalIP,ExternalIP",
            "--node-port-range", "30000-31000",
            "--tier-range", "web=30200-30299",
            "--tier-range", "db=30300-30399",
            "--lease-name", "lead",
            "--namespace", "ops",
            "--identity", "pod-1",
            "--lease-duration", "30",
            "--ttl", "9",
            "--admin", "127.0.0.2:9999",
        )
    )  # fmt: skip
    s = o.settings
    assert (s.cluster, s.region) == ("c1", "eu")
    assert s.address_preference == (AddressType.INTERNAL_IP, AddressType.EXTERNAL_IP)
    assert s.node_port_range == PortRange(30000, 31000)
    assert dict(s.tier_ranges) == {"web": PortRange(30200, 30299), "db": PortRange(30300, 30399)}
    assert (o.lease_name, o.lease_namespace, o.identity) == ("lead", "ops", "pod-1")
    e = o.election
    assert (e.identity, e.lease_duration_s, e.renew_deadline_s, e.retry_period_s) == (
        "pod-1", 30, 20, 4,
    )  # fmt: skip
    assert (o.ttl_s, o.admin_host, o.admin_port) == (9, "127.0.0.2", 9999)


def test_by_default_a_crashed_leaders_records_outlive_the_takeover():
    from portway.commands.controller import options_from_args

    assert options_from_args(args_of()).takeover_margin_s() > 2.0
    too_short = options_from_args(args_of("--ttl", "15", "--lease-duration", "15"))
    assert too_short.takeover_margin_s() < 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--tier-range", "web"],
        ["--address-preference", "Public"],
        ["--node-port-range", "high"],
        ["--admin", "nowhere"],
        ["--tier-range", "web=20000-20100"],
    ],
)
def test_bad_flags_are_usage_errors(argv, capsys):
    assert main(["controller", "--cluster", "c1", "--print", *argv]) == 2
    assert "portway controller: error:" in capsys.readouterr().err


def test_the_owner_flag_names_the_publisher_identity(tmp_path):
    from portway.commands.controller import owner_from_args, registry_from_args

    directory = ["--registry", "files", "--dir", str(tmp_path / "r")]
    assert owner_from_args(args_of(*directory)) == "portway-controller/c1"
    args = args_of(*directory, "--owner", "prod-eu/c1")
    registry = registry_from_args(args, owner=owner_from_args(args))
    assert registry.owner == "prod-eu/c1"


async def test_registry_flags_open_that_backend(tmp_path, etcd_cluster):
    from portway.commands.controller import registry_from_args

    files = registry_from_args(args_of("--registry", "files", "--dir", str(tmp_path / "r")))
    assert isinstance(files, FilesRegistry) and files.directory == tmp_path / "r"
    await files.close()

    record = ServiceRecord("c1", "ns", "svc", ports=())
    etcd = registry_from_args(
        args_of("--registry", "etcd", "--etcd", etcd_cluster.endpoints[0], "--root", "flags/")
    )
    await etcd.publish(record, None)
    assert ServiceKey("ns", "svc", "c1") in (await etcd.snapshot()).records
    await etcd.withdraw(record.key)
    await etcd.close()

    consul_emulator = ConsulEmulator().start()
    try:
        consul = registry_from_args(
            args_of("--registry", "consul", "--consul", consul_emulator.address)
        )
        await consul.publish(record, None)
        assert ServiceKey("ns", "svc", "c1") in (await consul.snapshot()).records
        await consul.close()
    finally:
        consul_emulator.stop()


async def test_print_lists_once_and_prints_the_records(
    emulator: KubeEmulator, apiserver: Apiserver, tmp_path, capsys
):
    emulator.put(NODES, node("n1", "127.0.1.1", internal_ip="127.0.9.1", zone="z1"))
    bad = {"name": "admin", "port": 81, "nodePort": 30500, "protocol": "TCP"}
    emulator.put(SERVICES, service("shop", "web", node_port=30080, extra_ports=[bad]))
    config = kubeconfig(tmp_path, apiserver.url)
    argv = [
        "controller", "--cluster", "c1", "--region", "eu", "--print",
        "--kubeconfig", str(config), "--context", "emu",
        "--address-preference", "InternalIP,ExternalIP", "--node-port-range", "30000-30100",
    ]  # fmt: skip
    code = await asyncio.to_thread(main, argv)
    out = capsys.readouterr().out
    assert code == 0, out
    printed = json.loads(out)
    (record,) = printed["records"]
    assert (record["cluster"], record["region"], record["service"]) == ("c1", "eu", "web")
    assert [n["address"] for n in record["nodes"]] == ["127.0.9.1"]
    assert [p["nodePort"] for p in record["ports"]] == [30080]
    assert [(v["service"], v["nodePort"]) for v in printed["violations"]] == [("shop/web", 30500)]
    assert emulator.watches_served == 0, "--print lists, never watches"


async def test_print_without_the_right_context_fails(apiserver: Apiserver, tmp_path, capsys):
    config = kubeconfig(tmp_path, apiserver.url)
    argv = ["controller", "--cluster", "c1", "--print", "--kubeconfig", str(config)]
    assert await asyncio.to_thread(main, argv) == 1
    assert "cannot list the cluster" in capsys.readouterr().err


async def test_the_process_serves_publishes_leaves_records_on_sigterm_and_its_restart_adopts(
    emulator: KubeEmulator, apiserver: Apiserver, tmp_path
):
    emulator.put(NODES, node("n1", "127.0.1.1"))
    emulator.put(SERVICES, service("shop", "web"))
    admin = free_port()
    registry_dir = tmp_path / "registry"
    argv = [
        sys.executable, "-m", "portway", "controller", "--cluster", "c1",
        "--registry", "files", "--dir", str(registry_dir), "--ttl", "30",
        "--kubeconfig", str(kubeconfig(tmp_path, apiserver.url)), "--context", "emu",
        "--lease-name", "portway-c1", "--namespace", "ops", "--identity", "pod-7",
        "--lease-duration", "3", "--admin", f"127.0.0.1:{admin}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log_path = tmp_path / "controller.log"
    record_file = registry_dir / "shop.web.c1.json"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(*argv, stderr=log, stdout=log, env=env)
    try:
        await eventually(lambda: read_records(registry_dir) != [], 20.0, "nothing published")
        lease = emulator.get(LEASES, "ops", "portway-c1")
        assert lease is not None and lease["spec"]["holderIdentity"] == "pod-7"
        assert lease["spec"]["leaseDurationSeconds"] == 3
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{admin}/readyz") as resp:
                assert resp.status == 200 and (await resp.json())["leader"] is True
            async with http.get(f"http://127.0.0.1:{admin}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{admin}/metrics") as resp:
                assert "portway_controller_kube_up 1.0" in await resp.text()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert [r.key for r in read_records(registry_dir)] == [ServiceKey("shop", "web", "c1")], (
        "kept on stop"
    )
    logs = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert any(entry["msg"] == "controller started" for entry in logs)
    lease = emulator.get(LEASES, "ops", "portway-c1")
    assert lease["spec"]["holderIdentity"] == "", "handed the Lease back"
    stopped = json.loads(record_file.read_bytes())
    assert stopped["owner"] == "portway-controller/c1"

    with log_path.open("ab") as log:  # the TTL is 30 s: only adoption rewrites it sooner
        proc = await asyncio.create_subprocess_exec(*argv, stderr=log, stdout=log, env=env)
    try:
        await eventually(
            lambda: json.loads(record_file.read_bytes())["publishedAt"] != stopped["publishedAt"],
            20.0,
            "the restarted process did not take the record over",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
