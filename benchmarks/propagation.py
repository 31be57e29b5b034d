"""Kubernetes change -> gateway routing table, measured: prints figures, asserts nothing.

The chain is the production one, each part real except the apiserver: an
emulated cluster (tests/controller/kube_emulator.py, in this process) with
its nodes served by loopback HTTP servers, a `portway controller` process
watching it and publishing into a real single-member etcd, and a
`portway gateway` process reading etcd. Each change cordons or uncordons one
node (alternately), and the clock runs from the write into the emulated
apiserver until the gateway's admin `/endpoints` shows the new endpoint set
(polled every `--poll-ms`, so figures carry up to that much extra). Changes
are sequential: the next is made once the previous one is seen.

What a change waits for: the watch event (thread -> loop), the controller's
debounce (30 ms, at most 200 ms under churn), derive + an etcd put (~1 ms),
the gateway feed's debounce (50 ms; a removal is handed over at once), the
table compile and swap.

Run: `PORTWAY_PURE=1 .venv/bin/python benchmarks/propagation.py [--changes 200]`.
Target (DESIGN.md): p99 <= 1 s, aim 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "controller"))
sys.path.insert(0, str(ROOT / "tests" / "registry"))

import aiohttp  # noqa: E402
from etcd_server import EtcdCluster  # noqa: E402
from propagation_rig import (  # noqa: E402
    Cluster,
    GatewayProcess,
    controller_process,
    free_node_port,
)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def measure(changes: int, poll_s: float, workdir: Path) -> dict[str, object]:
    (workdir / "etcd").mkdir()
    etcd = EtcdCluster(workdir / "etcd", size=1).start()
    cluster = Cluster("bench", 63, nodes=3)
    port = free_node_port([cluster.ip(i) for i in range(3)])
    await cluster.start(port)
    controller = controller_process(cluster, etcd.endpoints, workdir)
    gateway = GatewayProcess(workdir, etcd.endpoints, ["bench"])
    all_nodes = {("bench", cluster.node_name(i)) for i in range(3)}
    latencies: list[float] = []
    try:
        async with aiohttp.ClientSession() as http:
            await gateway.wait_ready(http)
            await wait(http, gateway, all_nodes, poll_s, 30.0)
            for i in range(changes):
                cordoned = i % 2 == 0
                wanted = all_nodes - {("bench", cluster.node_name(1))} if cordoned else all_nodes
                started = time.perf_counter()
                cluster.cordon(1, cordoned)
                await wait(http, gateway, wanted, poll_s, 10.0)
                latencies.append(time.perf_counter() - started)
    finally:
        await controller.stop()
        await gateway.stop()
        await cluster.stop()
        etcd.stop()
    ms = [x * 1000 for x in latencies]
    return {
        "changes": len(ms),
        "poll_ms": poll_s * 1000,
        "p50_ms": round(percentile(ms, 50), 1),
        "p90_ms": round(percentile(ms, 90), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
        "removals_p50_ms": round(percentile(ms[0::2], 50), 1),
        "additions_p50_ms": round(percentile(ms[1::2], 50), 1),
    }


async def wait(
    http: aiohttp.ClientSession,
    gateway: GatewayProcess,
    wanted: set[tuple[str, str]],
    poll_s: float,
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    while await gateway.endpoints(http) != wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"gateway never showed {sorted(wanted)}")
        await asyncio.sleep(poll_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200, help="changes to time (default 200)")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="admin poll period (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="portway-propagation-") as tmp:
        result = asyncio.run(measure(args.changes, args.poll_ms / 1000, Path(tmp)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
