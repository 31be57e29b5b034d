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
from propagation_rig import Cluster, GatewayProcess, controller_process, free_node_port

pytestmark = pytest.mark.e2e


async def served_by(http: aiohttp.ClientSession, url: str, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        async with http.get(url + "/") as resp:
            assert resp.status == 200
            seen[resp.headers["x-served-by"]] += 1
    return seen


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
            assert set(await served_by(http, gateway.url, 30)) == {
                "ca/ca-n1", "ca/ca-n2", "cb/cb-n1",
            }  # fmt: skip

            a.cordon(1, True)
            took = await wait_for(http, gateway, {("ca", "ca-n1"), ("cb", "cb-n1")})
            assert took < 1.0, f"cordon took {took:.3f} s to reach the gateway"
            assert set(await served_by(http, gateway.url, 20)) == {"ca/ca-n1", "cb/cb-n1"}

            b.export(False)
            await wait_for(http, gateway, {("ca", "ca-n1")})
            assert set(await served_by(http, gateway.url, 10)) == {"ca/ca-n1"}

            a.cordon(1, False)
            b.export(True)
            await wait_for(http, gateway, everything)
    finally:
        codes = [await p.stop() for p in processes]
        await b.stop()  # kmock's resolver hooks unwind in reverse order
        await a.stop()
    assert codes == [0, 0, 0], "\n".join(p.log()[-2000:] for p in processes)
