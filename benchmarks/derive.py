"""Timing of the controller's derivation on a large cluster, change by change.

Plain script, prints figures (not pass/fail). A cluster of `--services`
exported NodePort Services (a fifth of them externalTrafficPolicy Local, each
with one EndpointSlice of three pods) on `--nodes` nodes is listed into the
controller's `ClusterCache`; then, for each kind of change (a Service's port,
an EndpointSlice's pod moving to another node, a node cordoned), the step the
controller runs after its debounce is timed: take the snapshot (and the
Services the change touched), derive, and diff the records against what was
published. The records the diff says to write are counted, and the time to
encode them (what a registry write starts with) is shown apart. The
propagation target is 1 s from a Kubernetes change to the gateway's table.

`--whole` derives the whole cluster on every change, as the controller did
before derivation was incremental.

    PORTWAY_PURE=1 .venv/bin/python benchmarks/derive.py [--services 2000] [--nodes 500]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from controller.cache import ClusterCache
from controller.derive import Derivation, derive
from controller.objects import ClusterSettings
from controller.publish import plan
from controller.watch import ENDPOINT_SLICES, NODES, SERVICE_EXPORTS, SERVICES, ObjectEvent, Reset

SETTINGS = ClusterSettings(cluster="bench", region="r1")


def node(i: int, *, cordoned: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": f"node-{i}", "labels": {"topology.kubernetes.io/zone": f"z{i % 3}"}},
        "spec": {"unschedulable": cordoned},
        "status": {
            "addresses": [{"type": "InternalIP", "address": f"10.{i // 250}.{i % 250}.1"}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def service(i: int, *, node_port: int | None = None) -> dict[str, Any]:
    local = i % 5 == 0
    spec: dict[str, Any] = {
        "type": "NodePort",
        "ports": [{"name": "http", "port": 80, "nodePort": node_port or 30000 + i % 2700}],
        "externalTrafficPolicy": "Local" if local else "Cluster",
    }
    if local:
        spec["healthCheckNodePort"] = 32700
    return {
        "metadata": {
            "namespace": "ns",
            "name": f"svc-{i}",
            "annotations": {"portway.io/export": "true"},
        },
        "spec": spec,
    }


def endpoint_slice(i: int, on_nodes: list[int]) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": f"svc-{i}-a",
            "labels": {"kubernetes.io/service-name": f"svc-{i}"},
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [f"172.16.{i % 250}.{p + 1}"],
                "nodeName": f"node-{n}",
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": f"svc-{i}-{p}"},
            }
            for p, n in enumerate(on_nodes)
        ],
    }


class Step:
    """The controller's derive-and-diff step on a cache, whole or incremental."""

    def __init__(self, cache: ClusterCache, *, whole: bool) -> None:
        self.cache = cache
        self.whole = whole
        self.derivation: Derivation | None = None
        self.published: dict[Any, Any] = {}
        self.now = 0.0

    def __call__(self) -> tuple[float, list[Any]]:
        """Seconds for snapshot + derive + diff, and the records to write."""
        self.now += 1.0
        started = time.perf_counter()
        if self.whole:
            snap = self.cache.snapshot()
            derivation = derive(SETTINGS, snap.services, snap.nodes, snap.slices, self.now)
        else:
            from controller.incremental import rederive

            touched = self.cache.take_touched()
            snap = self.cache.snapshot()
            derivation = rederive(
                self.derivation, SETTINGS, snap.services, snap.nodes, snap.slices, touched, self.now
            )
        desired = derivation.records()
        todo = plan(desired, self.published)
        took = time.perf_counter() - started
        self.derivation = derivation
        self.published = {**{k: v for k, v in self.published.items() if k in desired}}
        self.published.update({r.key: r for r in todo.puts})
        return took, list(todo.puts)


def measure(name: str, step: Step, change: Callable[[int], ObjectEvent], runs: int) -> None:
    seconds, writes, encode = [], [], []
    for run in range(runs):
        step.cache.apply(change(run))
        took, puts = step()
        seconds.append(took)
        writes.append(len(puts))
        started = time.perf_counter()
        for record in puts:
            record.to_json()
        encode.append(time.perf_counter() - started)
    print(
        f"{name:<34} derive+diff median {statistics.median(seconds) * 1000:7.1f} ms"
        f" (max {max(seconds) * 1000:7.1f})   writes {statistics.median(writes):5.0f}"
        f"   encoding them {statistics.median(encode) * 1000:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--whole", action="store_true", help="derive everything on each change")
    args = parser.parse_args()
    rng = random.Random(7)
    placement = {i: [rng.randrange(args.nodes) for _ in range(3)] for i in range(args.services)}
    cache = ClusterCache()
    cache.apply(Reset(NODES, tuple(node(i) for i in range(args.nodes)), "1"))
    cache.apply(Reset(SERVICES, tuple(service(i) for i in range(args.services)), "1"))
    slices = tuple(endpoint_slice(i, placement[i]) for i in range(args.services))
    cache.apply(Reset(ENDPOINT_SLICES, slices, "1"))
    cache.apply(Reset(SERVICE_EXPORTS, (), "1"))
    step = Step(cache, whole=args.whole)
    took, puts = step()
    mode = "whole cluster on every change" if args.whole else "incremental"
    print(f"{args.services} services x {args.nodes} nodes ({mode})")
    print(f"{'first derivation':<34} derive+diff        {took * 1000:7.1f} ms   writes {len(puts)}")

    def service_port(run: int) -> ObjectEvent:
        i = rng.randrange(args.services)
        return ObjectEvent(SERVICES, "MODIFIED", service(i, node_port=32000 + run))

    def pod_moves(run: int) -> ObjectEvent:
        i = rng.randrange(args.services // 5) * 5  # a policy Local Service: its record changes
        placement[i] = [(placement[i][0] + 1) % args.nodes, *placement[i][1:]]
        return ObjectEvent(ENDPOINT_SLICES, "MODIFIED", endpoint_slice(i, placement[i]))

    def cordon(run: int) -> ObjectEvent:
        return ObjectEvent(NODES, "MODIFIED", node(run % args.nodes, cordoned=run % 2 == 0))

    measure("a Service's port changes", step, service_port, args.runs)
    measure("a pod moves (EndpointSlice, Local)", step, pod_moves, args.runs)
    measure("a node is cordoned / uncordoned", step, cordon, args.runs)


if __name__ == "__main__":
    main()
