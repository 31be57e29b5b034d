"""The controller against an emulated apiserver: cluster changes reach the registry.

Each test changes the emulated cluster the way kubectl or the kubelet would
and reads what the controller published into an in-memory registry.
"""

from __future__ import annotations

from conftest import (
    EXPORTS,
    NODES,
    SERVICES,
    SLICES,
    endpoint_slice,
    eventually,
    node,
    service,
)
from kube_emulator import KubeEmulator

from portway.model import ServiceKey, ServiceRecord, TrafficPolicy
from portway.registry.memory import MemoryRegistry, MemoryStore

KEY = ServiceKey("shop", "web", "c1")


def record(store: MemoryStore, key: ServiceKey = KEY) -> ServiceRecord | None:
    return store.snapshot().records.get(key)


def ready_nodes(store: MemoryStore, key: ServiceKey = KEY) -> dict[str, str]:
    r = record(store, key)
    return {} if r is None else {n.name: n.address for n in r.nodes if n.ready}


def three_nodes(emulator: KubeEmulator) -> None:
    emulator.put(NODES, node("n1", "127.0.1.1", zone="z1"))
    emulator.put(NODES, node("n2", "127.0.1.2", zone="z2"))
    emulator.put(NODES, node("n3", "127.0.1.3", zone="z2"))


async def test_node_changes_reach_the_record(emulator, start_controller):
    three_nodes(emulator)
    emulator.put(SERVICES, service("shop", "web", node_port=30080))
    store = MemoryStore()
    await start_controller(MemoryRegistry(store))
    await eventually(lambda: set(ready_nodes(store)) == {"n1", "n2", "n3"})
    r = record(store)
    assert r is not None and r.region == "r1" and r.zones == ("z1", "z2")
    assert [(p.name, p.port, p.node_port) for p in r.ports] == [("http", 80, 30080)]

    emulator.put(NODES, node("n4", "127.0.1.4"))
    await eventually(lambda: "n4" in ready_nodes(store), message="added node")
    emulator.remove(NODES, None, "n4")
    await eventually(lambda: "n4" not in ready_nodes(store), message="removed node")

    emulator.put(NODES, node("n1", "127.0.1.1", ready=False))
    await eventually(lambda: set(ready_nodes(store)) == {"n2", "n3"}, message="NotReady")
    r = record(store)
    assert r is not None and [n.ready for n in r.nodes if n.name == "n1"] == [False]

    emulator.put(NODES, node("n2", "127.0.1.2", unschedulable=True))
    await eventually(lambda: set(ready_nodes(store)) == {"n3"}, message="cordoned")
    r = record(store)
    assert r is not None and "n2" not in {n.name for n in r.nodes}

    excluded = {"node.kubernetes.io/exclude-from-external-load-balancers": ""}
    emulator.put(NODES, node("n1", "127.0.1.1", labels=excluded))
    emulator.put(NODES, node("n2", "127.0.1.2"))
    await eventually(lambda: set(ready_nodes(store)) == {"n2", "n3"}, message="excluded")


async def test_local_policy_follows_pods_moving(emulator, start_controller):
    three_nodes(emulator)
    emulator.put(
        SERVICES,
        service("shop", "web", policy="Local", health_check_node_port=32001),
    )
    emulator.put(SLICES, endpoint_slice("shop", "web", [("n1", True), ("n2", False)]))
    store = MemoryStore()
    await start_controller(MemoryRegistry(store))
    await eventually(lambda: set(ready_nodes(store)) == {"n1"})
    r = record(store)
    assert r is not None
    assert r.external_traffic_policy is TrafficPolicy.LOCAL
    assert r.health_check_node_port == 32001
    assert [(n.name, n.local_endpoints) for n in r.nodes] == [("n1", 1)]

    emulator.put(SLICES, endpoint_slice("shop", "web", [("n3", True), ("n3", True)]))
    await eventually(lambda: set(ready_nodes(store)) == {"n3"}, message="pod moved to n3")
    r = record(store)
    assert r is not None and [(n.name, n.local_endpoints) for n in r.nodes] == [("n3", 2)]


async def test_service_type_and_port_changes_and_unexport(emulator, start_controller):
    three_nodes(emulator)
    emulator.put(SERVICES, service("shop", "web", node_port=30080))
    emulator.put(SERVICES, service("shop", "api", node_port=30090))
    store = MemoryStore()
    await start_controller(MemoryRegistry(store))
    api = ServiceKey("shop", "api", "c1")
    await eventually(lambda: record(store) is not None and record(store, api) is not None)

    emulator.put(SERVICES, service("shop", "web", node_port=30081))
    await eventually(
        lambda: (r := record(store)) is not None and r.ports[0].node_port == 30081,
        message="nodePort change",
    )
    emulator.put(SERVICES, service("shop", "web", type="ClusterIP"))
    await eventually(lambda: record(store) is None, message="type ClusterIP withdraws")
    emulator.put(SERVICES, service("shop", "web", type="LoadBalancer", node_port=30082))
    await eventually(lambda: record(store) is not None, message="type LoadBalancer publishes")

    emulator.put(SERVICES, service("shop", "web", exported=False, node_port=30082))
    await eventually(lambda: record(store) is None, message="un-export withdraws")
    emulator.remove(SERVICES, "shop", "api")
    await eventually(lambda: record(store, api) is None, message="deletion withdraws")


async def test_service_export_object_exports_a_service(emulator, start_controller):
    emulator.declare(EXPORTS)
    three_nodes(emulator)
    emulator.put(SERVICES, service("shop", "web", exported=False))
    store = MemoryStore()
    controller = await start_controller(MemoryRegistry(store))
    await eventually(lambda: controller.cache.synced)
    assert record(store) is None
    export = {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport"}
    emulator.put(EXPORTS, {**export, "metadata": {"namespace": "shop", "name": "web"}})
    await eventually(lambda: record(store) is not None, message="ServiceExport created")
    emulator.remove(EXPORTS, "shop", "web")
    await eventually(lambda: record(store) is None, message="ServiceExport deleted")


async def test_absent_service_export_crd_is_tolerated(emulator, start_controller):
    three_nodes(emulator)
    emulator.put(SERVICES, service("shop", "web"))
    store = MemoryStore()
    controller = await start_controller(MemoryRegistry(store))
    await eventually(lambda: record(store) is not None)
    assert controller.kube_up


async def test_a_burst_of_changes_is_derived_a_few_times_not_once_per_event(
    emulator, start_controller
):
    three_nodes(emulator)
    emulator.put(SERVICES, service("shop", "web"))
    store = MemoryStore()
    controller = await start_controller(MemoryRegistry(store))
    await eventually(lambda: len(ready_nodes(store)) == 3)

    def derivations() -> float:
        return controller.metrics.registry.get_sample_value("portway_controller_derivations_total")

    before = derivations()
    for i in range(40):
        emulator.put(NODES, node(f"burst-{i}", f"127.0.2.{i + 1}"))
    await eventually(lambda: len(ready_nodes(store)) == 43, message="burst published")
    derived = derivations() - before
    assert 1 <= derived <= 5, f"{derived} derivations for 40 node events"
