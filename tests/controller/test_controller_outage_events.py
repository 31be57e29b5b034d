"""The apiserver going away (records kept alive in a real etcd), and NodePort Events."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from conftest import EVENTS, NODES, SERVICES, eventually, node, service
from kube_emulator import Apiserver, KubeEmulator

from controller.objects import ClusterSettings, PortRange
from portway.model import ServiceKey
from portway.registry.etcd import EtcdRegistry
from portway.registry.memory import MemoryRegistry, MemoryStore

KEY = ServiceKey("shop", "web", "c1")


async def metric(controller, name: str) -> str:
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{controller.admin_port}/metrics"
        async with http.get(url) as resp:
            text = await resp.text()
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


async def test_apiserver_unreachable_keeps_records_alive(
    emulator: KubeEmulator, apiserver: Apiserver, start_controller, etcd_cluster, caplog
):
    emulator.put(NODES, node("n1", "127.0.1.1"))
    emulator.put(SERVICES, service("shop", "web"))
    registry = EtcdRegistry(etcd_cluster.endpoints, root="outage/")
    reader = EtcdRegistry(etcd_cluster.endpoints, root="outage/")
    controller = await start_controller(registry)
    try:
        await eventually(lambda: KEY in controller.publisher.published)
        assert (
            await metric(controller, "portway_controller_kube_up")
            == "portway_controller_kube_up 1.0"
        )
        caplog.set_level(logging.INFO, logger="portway.controller")
        caplog.clear()

        await apiserver.down()
        await eventually(lambda: not controller.kube_up, message="outage not noticed")
        assert (
            await metric(controller, "portway_controller_kube_up")
            == "portway_controller_kube_up 0.0"
        )
        await asyncio.sleep(2.0 * 2.5)  # 2.5 record TTLs, and the Lease lapses too
        assert not controller.leading, "cannot renew the Lease, so it steps down"
        assert KEY in (await reader.snapshot()).records, "the record outlived its TTL"

        await apiserver.up()
        await eventually(lambda: controller.kube_up and controller.leading, 5.0)
        assert KEY in (await reader.snapshot()).records
        messages = [r.getMessage() for r in caplog.records if r.name == "portway.controller"]
        assert (
            messages.count("kubernetes apiserver unreachable; keeping the published records alive")
            == 1
        )
        assert messages.count("kubernetes apiserver reachable") == 1
    finally:
        await controller.stop()
        await registry.close()
        await reader.close()


async def test_nodeport_violations_become_events_and_metrics(
    emulator: KubeEmulator, start_controller
):
    emulator.put(NODES, node("n1", "127.0.1.1"))
    bad_port = {"name": "admin", "port": 8080, "nodePort": 40000, "protocol": "TCP"}
    emulator.put(SERVICES, service("shop", "web", node_port=30080, extra_ports=[bad_port]))
    emulator.put(
        SERVICES,
        service("shop", "tiered", node_port=30080, annotations={"portway.io/tier": "web"}),
    )
    store = MemoryStore()
    settings = ClusterSettings(
        cluster="c1", region="r1", tier_ranges={"web": PortRange(30200, 30299)}
    )
    controller = await start_controller(MemoryRegistry(store), settings=settings)
    await eventually(lambda: len(emulator.items(EVENTS)) == 2, message="two Events")
    events = sorted(emulator.items(EVENTS), key=lambda e: e["involvedObject"]["name"])
    assert [(e["involvedObject"]["name"], e["reason"], e["type"]) for e in events] == [
        ("tiered", "NodePortOutOfRange", "Warning"),
        ("web", "NodePortOutOfRange", "Warning"),
    ]
    assert "40000" in events[1]["message"] and "30200-30299" in events[0]["message"]
    record = store.snapshot().records[KEY]
    assert [p.name for p in record.ports] == ["http"], "the violating port is not published"
    assert ServiceKey("shop", "tiered", "c1") not in store.snapshot().records
    text = await metric(controller, "portway_controller_nodeport_violations{")
    assert 'namespace="shop",service="web"} 1.0' in text
    assert 'namespace="shop",service="tiered"} 1.0' in text

    emulator.put(NODES, node("n2", "127.0.1.2"))  # a re-derivation does not repeat Events
    await eventually(lambda: len(store.snapshot().records[KEY].nodes) == 2)
    emulator.put(SERVICES, service("shop", "web", node_port=30080))
    await eventually(
        lambda: (
            controller.derivation is not None
            and not any(v.service == "shop/web" for v in controller.derivation.violations())
        )
    )
    text = await metric(controller, "portway_controller_nodeport_violations{")
    assert 'service="web"' not in text, "the series goes when the port is fixed"
    assert 'service="tiered"} 1.0' in text
    assert len(emulator.items(EVENTS)) == 2
