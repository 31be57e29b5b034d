"""End to end: two emulated clusters, two controller processes, real etcd, a real gateway.

A Kubernetes change (a node cordoned, a Service un-exported) must change
where the gateway sends real requests, through the whole chain.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from propagation_rig import (
    Cluster,
    ControllerProcess,
    GatewayProcess,
    Process,
    controller_process,
    free_node_port,
)

from portway.model import ServiceKey
from portway.registry.base import Change, ChangeKind, Snapshot
from portway.registry.etcd import EtcdRegistry

pytestmark = pytest.mark.e2e


async def served_by(http: aiohttp.ClientSession, url: str, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        async with http.get(url + "/") as resp:
            assert resp.status == 200
            seen[resp.headers["x-served-by"]] += 1
    return seen


async def serving(http: aiohttp.ClientSession, url: str, wanted: set[str]) -> None:
    """Requests until every one of `wanted` has answered, and none outside it ever does.

    Endpoints new in the gateway's table ramp in over the backend's slowStart (2 s), so
    the first requests may all go to the others."""
    seen: set[str] = set()
    deadline = time.monotonic() + 5.0
    while seen != wanted:
        assert time.monotonic() < deadline, f"only {seen} answered, wanted {wanted}"
        got = set(await served_by(http, url, 10))
        assert got <= wanted, f"{got - wanted} answered, wanted only {wanted}"
        seen |= got


async def wait_for(http, gateway, wanted, timeout_s=10.0) -> float:
    start = time.monotonic()
    while (got := await gateway.endpoints(http)) != wanted:
        assert time.monotonic() - start < timeout_s, f"gateway sees {got}, wanted {wanted}"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_kubernetes_changes_reach_the_gateways_routing(tmp_path: Path, etcd_cluster):
    a = Cluster("ca", 61, nodes=2)
    b = Cluster("cb", 62, nodes=1)
    port = free_node_port([a.ip(0), a.ip(1), b.ip(0)])
    await a.start(port)
    await b.start(port)
    etcd = etcd_cluster.endpoints
    processes = [controller_process(a, etcd, tmp_path), controller_process(b, etcd, tmp_path)]
    gateway = GatewayProcess(tmp_path, etcd, ["ca", "cb"])
    processes.append(gateway)
    try:
        async with aiohttp.ClientSession() as http:
            await gateway.wait_ready(http)
            everything = {("ca", "ca-n1"), ("ca", "ca-n2"), ("cb", "cb-n1")}
            await wait_for(http, gateway, everything, 30.0)
            await serving(http, gateway.url, {"ca/ca-n1", "ca/ca-n2", "cb/cb-n1"})

            a.cordon(1, True)
            took = await wait_for(http, gateway, {("ca", "ca-n1"), ("cb", "cb-n1")})
            assert took < 1.0, f"cordon took {took:.3f} s to reach the gateway"
            await serving(http, gateway.url, {"ca/ca-n1", "cb/cb-n1"})

            b.export(False)
            await wait_for(http, gateway, {("ca", "ca-n1")})
            await serving(http, gateway.url, {"ca/ca-n1"})

            a.cordon(1, False)
            b.export(True)
            await wait_for(http, gateway, everything)
    finally:
        codes = [await p.stop() for p in processes]
        await b.stop()  # kmock's resolver hooks unwind in reverse order
        await a.stop()
    assert codes == [0, 0, 0], "\n".join(p.log()[-2000:] for p in processes)


class Observer:
    """Meanwhile: every poll of the gateway's /endpoints that differs from `wanted`, and
    every moment the registry's watch shows the cluster's record gone."""

    def __init__(self, http: aiohttp.ClientSession, gateway: GatewayProcess, wanted) -> None:
        self.http, self.gateway, self.wanted = http, gateway, wanted
        self.gateway_gaps: list[set[tuple[str, str]]] = []
        self.registry_gaps: list[Change | Snapshot] = []
        self.polls = 0

    async def poll_gateway(self) -> None:
        while True:
            got = await self.gateway.endpoints(self.http)
            self.polls += 1
            if got != self.wanted:
                self.gateway_gaps.append(got)
            await asyncio.sleep(0.01)

    async def follow_registry(self, registry: EtcdRegistry, key: ServiceKey) -> None:
        snap = await registry.snapshot()
        assert key in snap.records
        async for item in registry.watch(snap.revision):
            if isinstance(item, Snapshot):
                if key not in item.records:
                    self.registry_gaps.append(item)
            elif item.key == key and item.kind is ChangeKind.DELETE:
                self.registry_gaps.append(item)


async def leader_of(http, replicas: list[ControllerProcess], timeout_s: float) -> ControllerProcess:
    deadline = time.monotonic() + timeout_s
    while True:
        for replica in replicas:
            if await replica.leading(http):
                return replica
        assert time.monotonic() < deadline, "no replica leads"
        await asyncio.sleep(0.05)


async def test_restarts_and_takeovers_never_take_the_cluster_out_of_the_gateways_routing(
    tmp_path: Path, etcd_cluster
):
    """Two replicas of one cluster's controller: the leader stops (the other takes over),
    the stopped one is started again, the new leader is killed (the restarted one takes
    over when the Lease runs out); then the killed one's record TTL passes. The gateway's
    table never lacks an endpoint, and the registry never lacks the record.

    A killed leader's records live between TTL - renewal period (5 - 1.7 s) and TTL after
    its death; the takeover takes the Lease duration plus a retry period (2 + 0.3 s)."""
    cluster = Cluster("cr", 64, nodes=2)
    await cluster.start(free_node_port([cluster.ip(0), cluster.ip(1)]))
    etcd = etcd_cluster.endpoints
    timing = {"lease_s": 2.0, "ttl_s": 5.0}
    replicas = [controller_process(cluster, etcd, tmp_path, i, **timing) for i in (0, 1)]
    gateway = GatewayProcess(tmp_path, etcd, ["cr"])
    processes: list[Process] = [*replicas, gateway]
    registry = EtcdRegistry(etcd)
    everything = {("cr", "cr-n1"), ("cr", "cr-n2")}
    tasks: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as http:
            await gateway.wait_ready(http)
            await wait_for(http, gateway, everything, 30.0)
            observer = Observer(http, gateway, everything)
            tasks = [
                asyncio.create_task(observer.poll_gateway()),
                asyncio.create_task(
                    observer.follow_registry(registry, ServiceKey("shop", "web", "cr"))
                ),
            ]
            first = await leader_of(http, replicas, 10.0)
            (second,) = [r for r in replicas if r is not first]
            assert await first.stop() == 0
            await leader_of(http, [second], 5.0)

            restarted = controller_process(cluster, etcd, tmp_path, replicas.index(first), **timing)
            processes.append(restarted)
            deadline = time.monotonic() + 20.0
            while (await restarted.readyz(http)).get("synced") is not True:
                assert time.monotonic() < deadline, "the restarted replica never synced"
                await asyncio.sleep(0.05)  # listed and derived, a follower
            second.proc.kill()
            await asyncio.to_thread(second.proc.wait)
            await leader_of(http, [restarted], 10.0)
            await asyncio.sleep(5.0 + 1.0)  # the killed leader's lease has run out
            await serving(http, gateway.url, {"cr/cr-n1", "cr/cr-n2"})
            assert all(not t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await registry.close()
        codes = [await p.stop() for p in processes]
        await cluster.stop()
    assert observer.polls > 100, observer.polls
    assert observer.gateway_gaps == [], (
        f"the gateway's table lacked endpoints: {observer.gateway_gaps}"
    )
    assert observer.registry_gaps == [], f"the record was gone: {observer.registry_gaps}"
    assert codes[2:] == [0, 0], "the gateway and the restarted replica stop cleanly"
