"""Fixtures for controller tests: an emulated apiserver on loopback, object builders,
controllers with short timings, and a poll helper.

Builders write the API's JSON (camelCase), the shape a watch stream carries.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_emulator import Apiserver, KubeEmulator

from controller.app import Controller, ControllerOptions
from controller.leader import ElectionSettings
from controller.objects import ClusterSettings
from controller.watch import WatchTiming
from portway.registry.base import Registry

SERVICES = "v1/services"
NODES = "v1/nodes"
SLICES = "discovery.k8s.io/v1/endpointslices"
LEASES = "coordination.k8s.io/v1/leases"
EVENTS = "v1/events"
EXPORTS = "multicluster.x-k8s.io/v1alpha1/serviceexports"


def node(
    name: str,
    ip: str,
    *,
    zone: str = "z1",
    ready: bool = True,
    unschedulable: bool = False,
    labels: dict[str, str] | None = None,
    internal_ip: str | None = None,
) -> dict[str, Any]:
    addresses = [{"type": "ExternalIP", "address": ip}]
    if internal_ip:
        addresses.append({"type": "InternalIP", "address": internal_ip})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"topology.kubernetes.io/zone": zone, **(labels or {})},
        },
        "spec": {"unschedulable": unschedulable},
        "status": {
            "addresses": addresses,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def service(
    namespace: str,
    name: str,
    *,
    node_port: int = 30080,
    port: int = 80,
    type: str = "NodePort",
    exported: bool = True,
    policy: str = "Cluster",
    health_check_node_port: int | None = None,
    extra_ports: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": type,
        "ports": [
            {"name": "http", "port": port, "nodePort": node_port, "protocol": "TCP"},
            *(extra_ports or []),
        ],
        "externalTrafficPolicy": policy,
    }
    if health_check_node_port is not None:
        spec["healthCheckNodePort"] = health_check_node_port
    notes = dict(annotations or {})
    if exported:
        notes["portway.io/export"] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": namespace, "name": name, "annotations": notes},
        "spec": spec,
    }


def endpoint_slice(
    namespace: str, service_name: str, endpoints: list[tuple[str, bool]], *, suffix: str = "a"
) -> dict[str, Any]:
    """`endpoints`: (node name, ready) per pod."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": namespace,
            "name": f"{service_name}-{suffix}",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [f"10.0.{i // 250}.{i % 250 + 1}"],
                "nodeName": node_name,
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "targetRef": {"kind": "Pod", "name": f"{service_name}-pod-{i}"},
            }
            for i, (node_name, ready) in enumerate(endpoints)
        ],
    }


def fast_options(cluster: str, identity: str, **overrides: Any) -> ControllerOptions:
    """Timings shrunk so a takeover or an expiry takes a second or two."""
    base: dict[str, Any] = {
        "settings": ClusterSettings(cluster=cluster, region="r1"),
        "identity": identity,
        "election": ElectionSettings(
            identity=identity, lease_duration_s=1.5, renew_deadline_s=1.0, retry_period_s=0.2
        ),
        "ttl_s": 2.0,
        "debounce_s": 0.02,
        "max_delay_s": 0.1,
        "admin_port": 0,
        "watch_timing": WatchTiming(
            watch_timeout_s=30,
            read_timeout_s=60,
            backoff_initial_s=0.05,
            backoff_max_s=0.5,
            absent_retry_s=1.0,
        ),
        "publish_retry_s": 0.2,
    }
    base.update(overrides)
    return ControllerOptions(**base)


async def eventually(
    predicate: Callable[[], bool], timeout_s: float = 5.0, message: str = ""
) -> float:
    """Poll every 10 ms until `predicate()`; return the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(message or f"not true within {timeout_s} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


@pytest.fixture
async def emulator() -> AsyncIterator[KubeEmulator]:
    emu = KubeEmulator(bookmark_interval_s=0.3)
    async with emu:
        emu.declare(SERVICES, SLICES, LEASES, EVENTS)
        emu.declare(NODES, namespaced=False)
        yield emu


@pytest.fixture
async def apiserver(emulator: KubeEmulator) -> AsyncIterator[Apiserver]:
    server = Apiserver(emulator)
    await server.up()
    yield server
    await server.down()


@pytest.fixture
async def start_controller(
    apiserver: Apiserver,
) -> AsyncIterator[Callable[..., Any]]:
    """Start controllers against the emulator; every one still running is stopped at the end."""
    running: list[Controller] = []

    async def start(
        registry: Registry, *, cluster: str = "c1", identity: str = "replica-a", **overrides: Any
    ) -> Controller:
        controller = Controller(
            fast_options(cluster, identity, **overrides), apiserver.api_client(), registry
        )
        await controller.start()
        running.append(controller)
        return controller

    yield start
    for controller in running:
        if controller.running:
            await controller.stop()


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))
from etcd_server import EtcdCluster  # noqa: E402  (tests/registry's real etcd and Consul emulator)


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(Path(tmp_path_factory.mktemp("etcd-controller")), size=1).start()
    yield cluster
    cluster.stop()
