"""Registry → gateway propagation, measured: prints figures, asserts nothing.

For etcd (a real single-member server on loopback) and the files backend:

- publish → `EndpointFeed` callback latency, p50/p99 over N sequential
  updates of one record, with the feed's default 50 ms debounce and with none;
- time to notice an expired record: TTL 2 s, the writer stops renewing, time
  from its last successful renewal to the callback without the record;
- etcd client choice: put round-trip through aetcd (gRPC) and through etcd's
  JSON gateway over aiohttp, the transport `EtcdRegistry` uses.

Run: `.venv/bin/python benchmarks/registry_latency.py [--updates 200]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "registry"))

from etcd_server import EtcdCluster
from prometheus_client import CollectorRegistry

from gateway.runtime.feed import EndpointFeed, FeedStatus
from portway.model import Node, ServiceKey, ServicePort, ServiceRecord
from portway.registry.base import Registry
from portway.registry.etcd import EtcdRegistry
from portway.registry.files import FilesRegistry


def rec(cluster: str, seq: int) -> ServiceRecord:
    return ServiceRecord(
        cluster=cluster,
        namespace="bench",
        service="web",
        ports=(ServicePort("http", 80, 30000 + seq % 2000),),
        nodes=(Node("n1", "10.0.0.1"),),
        published_at=float(seq),
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Probe:
    """Wakes a waiter when a callback satisfies its condition."""

    def __init__(self) -> None:
        self.records: dict[ServiceKey, ServiceRecord] = {}
        self.event = asyncio.Event()
        self.at = 0.0

    def __call__(
        self, changes: Mapping[ServiceKey, ServiceRecord | None], status: FeedStatus
    ) -> None:
        for key, record in changes.items():
            if record is None:
                self.records.pop(key, None)
            else:
                self.records[key] = record
        self.at = time.perf_counter()
        self.event.set()

    async def until(self, check, timeout_s: float = 10.0) -> float:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while not check(self.records):
            self.event.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("feed did not deliver in time")
            try:
                await asyncio.wait_for(self.event.wait(), remaining)
            except TimeoutError:
                continue
        return self.at


async def publish_latency(
    writer: Registry, reader: Registry, n: int, debounce_s: float
) -> list[float]:
    probe = Probe()
    feed = EndpointFeed(reader, probe, debounce_s=debounce_s, metrics_registry=CollectorRegistry())
    feed.start()
    await asyncio.wait_for(feed.synced.wait(), 10)
    key = rec("lat", 0).key
    out = []
    try:
        for seq in range(1, n + 1):
            t0 = time.perf_counter()
            await writer.publish(rec("lat", seq), ttl_s=30)
            t1 = await probe.until(lambda r, s=seq: key in r and r[key].published_at == s)
            out.append(t1 - t0)
    finally:
        await writer.withdraw(key)
        await feed.stop()
    return out


async def expiry_notice(writer: Registry, reader: Registry, ttl_s: float, reps: int) -> list[float]:
    probe = Probe()
    feed = EndpointFeed(reader, probe, metrics_registry=CollectorRegistry())
    feed.start()
    await asyncio.wait_for(feed.synced.wait(), 10)
    out = []
    try:
        for i in range(reps):
            r = rec(f"exp{i}", i)
            lease = await writer.publish(r, ttl_s=ttl_s)
            await probe.until(lambda recs, k=r.key: k in recs)
            await asyncio.sleep(ttl_s / 2)  # let at least one renewal happen
            await writer.abandon(r.key)
            renewed = lease.last_renewal
            await probe.until(lambda recs, k=r.key: k not in recs, timeout_s=ttl_s * 4)
            out.append(time.monotonic() - renewed - (time.perf_counter() - probe.at))
    finally:
        await feed.stop()
    return out


async def etcd_put_rtt(endpoints: list[str], n: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    reg = EtcdRegistry(endpoints, root="bench-rtt/")
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        await reg.put_raw(f"k{i}", b"v")
        times.append(time.perf_counter() - t0)
    results["json-gateway (aiohttp)"] = times
    await reg.close()
    try:
        import aetcd

        host, port = endpoints[0].rsplit("//", 1)[1].split(":")
        async with aetcd.Client(host=host, port=int(port)) as client:
            times = []
            for i in range(n):
                t0 = time.perf_counter()
                await client.put(f"bench-rtt/a{i}".encode(), b"v")
                times.append(time.perf_counter() - t0)
        results["aetcd (grpc)"] = times
    except Exception as exc:  # a benchmark reports, it does not stop
        print(f"  aetcd: failed: {exc!r}")
    return results


def line(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"  {name:<42} n={len(ms):<4} p50={pct(ms, 0.5):8.2f} ms  p99={pct(ms, 0.99):8.2f} ms"
        f"  max={max(ms):8.2f} ms  mean={statistics.fmean(ms):8.2f} ms"
    )


async def main(n: int, reps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = EtcdCluster(Path(tmp) / "etcd", size=1)
        (Path(tmp) / "etcd").mkdir()
        cluster.start()
        try:
            eps = cluster.endpoints
            print("publish -> feed callback")
            for debounce in (0.05, 0.0):
                w, r = EtcdRegistry(eps), EtcdRegistry(eps)
                print(
                    line(
                        f"etcd debounce={debounce * 1000:.0f}ms",
                        await publish_latency(w, r, n, debounce),
                    )
                )
                await w.close()
                await r.close()
                d = Path(tmp) / f"files-{debounce}"
                w2, r2 = FilesRegistry(d), FilesRegistry(d)
                print(
                    line(
                        f"files debounce={debounce * 1000:.0f}ms",
                        await publish_latency(w2, r2, n, debounce),
                    )
                )
                await w2.close()
                await r2.close()
            print("expired record noticed (TTL 2 s; from last renewal to callback)")
            w, r = EtcdRegistry(eps), EtcdRegistry(eps)
            print(line("etcd", await expiry_notice(w, r, 2.0, reps)))
            await w.close()
            await r.close()
            d = Path(tmp) / "files-exp"
            w2, r2 = FilesRegistry(d), FilesRegistry(d)
            print(line("files", await expiry_notice(w2, r2, 2.0, reps)))
            await w2.close()
            await r2.close()
            print("etcd put round-trip by client")
            for name, values in (await etcd_put_rtt(eps, n)).items():
                print(line(name, values))
        finally:
            cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--expiry-reps", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.updates, args.expiry_reps))
