"""Timing of the routing core: table compile and the per-request decision.

Plain script, prints figures (not pass/fail) next to the design targets:
compile 10,000 services × 50 endpoints ≤ 1 s; the whole `route_http`
decision (match → backend → locality → endpoint) ≤ 3 µs median on a table of
100 routes with round robin.

    .venv/bin/python benchmarks/routing.py [--services 10000] [--calls 200000]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from gateway.config.model import (
    Backend,
    BackendRef,
    GatewayConfig,
    GatewaySettings,
    HeaderMatch,
    Listener,
    ListenerProtocol,
    PathMatch,
    PathMatchType,
    Route,
    RouteMatch,
    Rule,
    ServiceRef,
    StaticEndpoint,
)
from gateway.routing.compiler import compile_table
from gateway.routing.decision import RequestFacts
from gateway.routing.endpoints import EndpointState
from portway.model import Node, ServicePort, ServiceRecord

COMPILE_TARGET_S = 1.0
DECISION_TARGET_US = 3.0
CLUSTERS = (
    ("east", "us-east-1", ("us-east-1a", "us-east-1b")),
    ("west", "us-west-2", ("us-west-2a",)),
)


def registry_setup(services: int, endpoints: int) -> tuple[GatewayConfig, list[ServiceRecord]]:
    """`services` registry backends, each with `endpoints` node endpoints over two clusters."""
    per_cluster = endpoints // len(CLUSTERS)
    nodes = {
        cluster: tuple(
            Node(f"{cluster}-n{i}", f"10.{c}.{i // 250}.{i % 250 + 1}", zones[i % len(zones)])
            for i in range(per_cluster)
        )
        for c, (cluster, _, zones) in enumerate(CLUSTERS)
    }
    records = [
        ServiceRecord(
            cluster=cluster,
            namespace="bench",
            service=f"svc{s}",
            region=region,
            zones=zones,
            ports=(ServicePort("http", 80, 30000 + s % 2768),),
            nodes=nodes[cluster],
        )
        for s in range(services)
        for cluster, region, zones in CLUSTERS
    ]
    backends = tuple(
        Backend(name=f"svc{s}", service=ServiceRef(namespace="bench", name=f"svc{s}", port="http"))
        for s in range(services)
    )
    config = GatewayConfig(
        gateway=GatewaySettings(region="us-east-1", zone="us-east-1a"),
        listeners=(Listener(name="web", protocol=ListenerProtocol.HTTP, port=8080),),
        routes=(
            Route(
                name="all",
                rules=(Rule(backend_refs=(BackendRef(name="svc0"),)),),
            ),
        ),
        backends=backends,
    )
    return config, records


def hundred_routes() -> GatewayConfig:
    """100 routes: 10 hosts × 10 routes of path prefixes (one with a header match), RR."""
    routes = []
    backends = []
    for h in range(10):
        for r in range(10):
            name = f"h{h}-r{r}"
            backends.append(
                Backend(
                    name=name,
                    endpoints=tuple(
                        StaticEndpoint(address="127.0.0.1", port=20000 + h * 100 + r * 5 + i)
                        for i in range(4)
                    ),
                )
            )
            matches = (
                RouteMatch(path=PathMatch(type=PathMatchType.PATH_PREFIX, value=f"/svc{r}")),
            )
            if r == 0:
                matches = (
                    RouteMatch(
                        path=PathMatch(type=PathMatchType.PATH_PREFIX, value="/svc0"),
                        headers=(HeaderMatch(name="x-version", value="2"),),
                    ),
                    *matches,
                )
            routes.append(
                Route(
                    name=name,
                    hostnames=(f"host{h}.example.com",),
                    rules=(Rule(backend_refs=(BackendRef(name=name),), matches=matches),),
                )
            )
    return GatewayConfig(
        listeners=(Listener(name="web", protocol=ListenerProtocol.HTTP, port=8080),),
        routes=tuple(routes),
        backends=tuple(backends),
    )


def bench_compile(services: int, endpoints: int, repeat: int) -> None:
    config, records = registry_setup(services, endpoints)
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        table = compile_table(config, records, seed=1)
        times.append(time.perf_counter() - t0)
    total = sum(len(b.endpoints) for b in table.backends.values())
    best, median = min(times), statistics.median(times)
    verdict = "meets" if median <= COMPILE_TARGET_S else "MISSES"
    print(
        f"compile: {services} services, {len(records)} records, {total} endpoints: "
        f"median {median:.3f} s, best {best:.3f} s over {repeat} runs "
        f"(target ≤ {COMPILE_TARGET_S} s: {verdict})"
    )


def bench_decision(calls: int, batch: int) -> None:
    table = compile_table(hundred_routes(), [], seed=1)
    state = EndpointState()
    requests = [
        RequestFacts(
            "GET",
            f"host{i % 10}.example.com",
            f"/svc{(i * 7) % 10}/items/{i}",
            client_ip="203.0.113.7",
            listener="web",
            headers={"user-agent": "bench"},
        )
        for i in range(batch)
    ]
    for f in requests:
        assert table.route_http(f, state).endpoint is not None
    route = table.route_http
    per_call_ns: list[float] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(max(1, calls // batch)):
            for f in requests:
                t0 = clock()
                route(f, state)
                per_call_ns.append(clock() - t0)
        overhead = []
        for _ in range(batch):
            t0 = clock()
            overhead.append(clock() - t0)
        t0 = clock()
        for _ in range(max(1, calls // batch)):
            for f in requests:
                route(f, state)
        batched_ns = (clock() - t0) / (max(1, calls // batch) * batch)
    finally:
        gc.enable()
    timer = statistics.median(overhead)
    per_call_ns.sort()
    median = per_call_ns[len(per_call_ns) // 2] - timer
    p99 = per_call_ns[int(len(per_call_ns) * 0.99)] - timer
    verdict = "meets" if median / 1000 <= DECISION_TARGET_US else "MISSES"
    print(
        f"route_http on 100 routes (10 hosts × 10 prefixes, round robin): "
        f"{len(per_call_ns)} calls: median {median / 1000:.2f} µs, p99 {p99 / 1000:.2f} µs "
        f"(timer overhead {timer:.0f} ns subtracted); batched mean {batched_ns / 1000:.2f} µs "
        f"(target median ≤ {DECISION_TARGET_US} µs: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    bench_decision(args.calls, args.batch)
    bench_compile(args.services, args.endpoints, args.repeat)


if __name__ == "__main__":
    main()
