"""Fleet-scale benchmark: N registry services × 50 endpoints while endpoints churn.

    python benchmarks/scale.py --services 1000 10000 --registry files etcd --phase-s 10

For each N and registry it generates N services (a route and a registry
backend each), writes their 2N records (a files directory, or a real etcd
started as tests/registry/etcd_server.py does), starts a real `portway
gateway` (one worker, pinned to CPU 1 when `taskset` exists) and a loopback
upstream behind service 0, and runs phases under load (wrk -t1 -c32 on CPU 0
when installed, else an aiohttp loop):

- `steady`: no changes;
- `one`: one change;
- `1/s`, `10/s`: a node of a random other service flips Ready every 1 s / 0.1 s.

The fleet is shaped like real clusters, so every one of its 50 N endpoints is
distinct and the gateway holds each on its own. Clusters come in pairs, one
in us-east-1 and one in us-west-2 (`east-0`/`west-0`, `east-1`/`west-1`, ...),
each of 25 nodes with their own addresses (`127.<cluster + 1>.0.<node + 1>`,
names `<cluster>-n<node>`, zones a/b alternating). A service is exported from
both clusters of one pair; a pair carries `--per-cluster` services (default
2,000, so 10,000 services make 5 pairs, 10 clusters, 250 nodes). A NodePort
is allocated once per cluster and opened on every node of it (kube-proxy),
so within a cluster each service has its own NodePort (30000 + its index in
the pair), every record of a cluster names the same 25 nodes, and no
(node address, NodePort) pair recurs anywhere in the fleet. The one
exception is service 0, whose nodes are the live upstream on 127.0.0.1-25
(NodePort 31001 in east-0, 31002 in west-0): every request goes there.

A change is a record write (atomic file replace, or an etcd put); its
change-to-table latency is the time until the admin API's `/endpoints`
page of that backend shows the flipped node (polled every 10 ms). During
every phase `/readyz` and `/metrics` are fetched once a second (their
answer times are reported). Printed per phase: rps, p50/p99/max latency,
change-to-table p50/p99/max and how many changes were seen, probe times,
and the gateway's RSS (and peak RSS). Startup reports the time to the
first 200 on service 0 and to /readyz 200, and RSS then.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "registry"))

import aiohttp  # noqa: E402

from portway.model import Node, ServicePort, ServiceRecord  # noqa: E402
from portway.registry.record_files import file_name, record_file_bytes  # noqa: E402

REGIONS = ("us-east-1", "us-west-2")
NODES_PER_CLUSTER = 25
PER_CLUSTER = 2000
"""Services per cluster by default (a cluster opens at most 2,768 NodePorts: 30000-32767)."""
MAX_PER_CLUSTER = 32767 - 30000 + 1
HOT_PORTS = {"east-0": 31001, "west-0": 31002}
NAMESPACE = "bench"


def service_name(i: int) -> str:
    return f"svc-{i:05d}"


@dataclass(frozen=True)
class Fleet:
    """Where each service lives: `per_cluster` services per pair of clusters (module docstring)."""

    n: int
    per_cluster: int = PER_CLUSTER

    def clusters_of(self, i: int) -> tuple[tuple[int, str, str], ...]:
        """(cluster index, cluster name, region) of service i's two clusters."""
        pair = i // self.per_cluster
        return tuple(
            (2 * pair + side, f"{('east', 'west')[side]}-{pair}", REGIONS[side]) for side in (0, 1)
        )

    @property
    def clusters(self) -> int:
        return 2 * -(-self.n // self.per_cluster)

    def record(
        self, i: int, cluster: tuple[int, str, str], down: frozenset[int] = frozenset()
    ) -> ServiceRecord:
        """Service i's record in `cluster`: every node of the cluster on the service's NodePort.

        Service 0's nodes are the live loopback upstream instead.
        """
        index, name, region = cluster
        if i == 0:
            addresses = [f"127.0.0.{n + 1}" for n in range(NODES_PER_CLUSTER)]
            node_port = HOT_PORTS[name]
        else:
            addresses = [f"127.{index + 1}.0.{n + 1}" for n in range(NODES_PER_CLUSTER)]
            node_port = 30000 + i % self.per_cluster
        return ServiceRecord(
            cluster=name,
            namespace=NAMESPACE,
            service=service_name(i),
            region=region,
            ports=(ServicePort("http", 80, node_port),),
            nodes=tuple(
                Node(f"{name}-n{n}", a, f"{region}{'ab'[n % 2]}", ready=n not in down)
                for n, a in enumerate(addresses)
            ),
        )


def config_text(n: int, registry: str, where: str, port: int, admin_port: int) -> str:
    if registry == "files":
        reg = f"registry: {{type: files, path: {where}, debounce: 10ms}}"
    else:
        reg = f'registry: {{type: etcd, endpoints: ["{where}"], debounce: 10ms}}'
    lines = [
        "version: 1",
        "gateway: {region: us-east-1, zone: us-east-1a}",
        reg,
        f"admin: {{address: 127.0.0.1, port: {admin_port}}}",
        "listeners:",
        f"  - {{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}",
        "routes:",
    ]
    for i in range(n):
        s = service_name(i)
        lines.append(
            f"  - {{name: {s}, hostnames: [{s}.bench], rules: [{{backendRefs: [{{name: {s}}}]}}]}}"
        )
    lines.append("backends:")
    for i in range(n):
        s = service_name(i)
        lines.append(
            f"  - {{name: {s}, service: {{namespace: {NAMESPACE}, name: {s}, port: http}}}}"
        )
    return "\n".join(lines) + "\n"


# ---- registries ---------------------------------------------------------------


class FilesWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.where = str(directory)

    async def put(self, record: ServiceRecord) -> None:
        path = self.directory / file_name(record.key)
        tmp = self.directory / f".tmp-{path.name}"
        tmp.write_bytes(record_file_bytes(record, None, ""))
        os.replace(tmp, path)

    async def close(self) -> None:
        return None


class EtcdWriter:
    def __init__(self, base: Path) -> None:
        from etcd_server import EtcdCluster

        self.cluster = EtcdCluster(base, size=1).start()
        self.where = self.cluster.endpoints[0]
        self.session = aiohttp.ClientSession()

    async def put(self, record: ServiceRecord) -> None:
        import base64

        body = {
            "key": base64.b64encode(record.key.path().encode()).decode(),
            "value": base64.b64encode(record.to_json().encode()).decode(),
        }
        async with self.session.post(self.where + "/v3/kv/put", json=body) as resp:
            resp.raise_for_status()
            await resp.read()

    async def close(self) -> None:
        await self.session.close()
        self.cluster.stop()


async def populate(writer: Any, fleet: Fleet) -> None:
    sem = asyncio.Semaphore(32)

    async def one(i: int, cluster: tuple[int, str, str]) -> None:
        async with sem:
            await writer.put(fleet.record(i, cluster))

    await asyncio.gather(*(one(i, c) for i in range(fleet.n) for c in fleet.clusters_of(i)))


# ---- processes ------------------------------------------------------------------


UPSTREAM = """
import asyncio, sys
RESPONSE = b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.t.write(RESPONSE * d.count(b"\\r\\n\\r\\n"))
async def main():
    loop = asyncio.get_running_loop()
    for port in map(int, sys.argv[1:]):
        for n in range(1, 26):
            await loop.create_server(P, f"127.0.0.{n}", port, reuse_address=True)
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def pinned(cpu: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if shutil.which("taskset") else argv


def rss_kib(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def wait_http(url: str, host: str | None, timeout_s: float) -> float:
    started = time.perf_counter()
    headers = {"Host": host} if host else {}
    async with aiohttp.ClientSession() as s:
        while time.perf_counter() - started < timeout_s:
            try:
                async with s.get(url, headers=headers) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.02)
    raise TimeoutError(url)


# ---- load, churn, probes ----------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    changes: list[float] = field(default_factory=list)
    sent: int = 0
    probes_ms: list[float] = field(default_factory=list)
    rss_mib: float = 0.0
    peak_mib: float = 0.0


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


async def wrk_load(port: int, duration_s: float, result: PhaseResult) -> None:
    argv = pinned(
        0,
        [
            "wrk",
            "-t1",
            "-c32",
            f"-d{duration_s:.0f}s",
            "--latency",
            "-H",
            f"Host: {service_name(0)}.bench",
            f"http://127.0.0.1:{port}/",
        ],
    )
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE)
    out = (await proc.communicate())[0].decode()
    if "Latency Distribution" not in out:
        raise RuntimeError(f"wrk: {out}")
    result.rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    result.max_ms = _ms(re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    result.p50_ms = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    result.p99_ms = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]


async def loop_load(port: int, duration_s: float, result: PhaseResult) -> None:
    """The fallback without wrk: 32 keep-alive aiohttp clients."""
    latencies: list[float] = []
    deadline = time.perf_counter() + duration_s
    headers = {"Host": f"{service_name(0)}.bench"}

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            async with session.get(f"http://127.0.0.1:{port}/", headers=headers) as r:
                await r.read()
            latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(32)))
    latencies.sort()
    result.rps = len(latencies) / duration_s
    result.p50_ms = latencies[len(latencies) // 2] * 1000
    result.p99_ms = latencies[int(len(latencies) * 0.99)] * 1000
    result.max_ms = latencies[-1] * 1000


class Churn:
    """Flips one node of a random service (never service 0) and times its arrival in the table."""

    def __init__(self, writer: Any, fleet: Fleet, admin: str) -> None:
        self.writer = writer
        self.fleet = fleet
        self.n = fleet.n
        self.admin = admin
        self.names = sorted(service_name(i) for i in range(fleet.n))
        self.down: dict[tuple[int, str], set[int]] = {}
        self.rng = random.Random(7)
        self.session: aiohttp.ClientSession | None = None

    async def change(self, result: PhaseResult) -> None:
        i = self.rng.randrange(1, self.n)
        cluster = self.fleet.clusters_of(i)[self.rng.randrange(2)]
        node = self.rng.randrange(NODES_PER_CLUSTER)
        down = self.down.setdefault((i, cluster[1]), set())
        down ^= {node}
        record = self.fleet.record(i, cluster, frozenset(down))
        target = record.nodes[node]
        key = f"{record.cluster}/{target.address}:{record.ports[0].node_port}"
        t0 = time.perf_counter()
        await self.writer.put(record)
        result.sent += 1
        name = service_name(i)
        index = self.names.index(name)
        query = f"?limit=1&after={self.names[index - 1]}" if index else "?limit=1"
        assert self.session is not None
        while time.perf_counter() - t0 < 30:
            async with self.session.get(self.admin + "/endpoints" + query) as r:
                body = await r.json()
            eps = body["backends"].get(name, [])
            if any(e["key"] == key and e["ready"] == target.ready for e in eps):
                result.changes.append(time.perf_counter() - t0)
                return
            await asyncio.sleep(0.01)

    async def run(self, rate_hz: float, count: int, result: PhaseResult) -> None:
        tasks = []
        for _ in range(count):
            tasks.append(asyncio.create_task(self.change(result)))
            if rate_hz:
                await asyncio.sleep(1 / rate_hz)
        await asyncio.gather(*tasks)


async def probes(admin: str, stop: asyncio.Event, result: PhaseResult) -> None:
    async with aiohttp.ClientSession() as s:
        while not stop.is_set():
            for path in ("/readyz", "/metrics"):
                t0 = time.perf_counter()
                async with s.get(admin + path) as r:
                    await r.read()
                result.probes_ms.append((time.perf_counter() - t0) * 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def phase(
    name: str,
    pid: int,
    port: int,
    admin: str,
    churn: Churn,
    phase_s: float,
    rate: float,
    count: int,
) -> PhaseResult:
    result = PhaseResult(name)
    stop = asyncio.Event()
    prober = asyncio.create_task(probes(admin, stop, result))
    load = wrk_load if shutil.which("wrk") else loop_load
    loader = asyncio.create_task(load(port, phase_s, result))
    await asyncio.sleep(min(1.0, phase_s / 4))
    if count:
        await churn.run(rate, count, result)
    await loader
    stop.set()
    await prober
    rss, peak = rss_kib(pid)
    result.rss_mib, result.peak_mib = rss / 1024, peak / 1024
    return result


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def show(n: int, registry: str, r: PhaseResult) -> None:
    ch = (
        f"{pct(r.changes, 0.5) * 1000:7.1f} {pct(r.changes, 0.99) * 1000:7.1f} "
        f"{max(r.changes) * 1000:7.1f} {len(r.changes)}/{r.sent}"
        if r.sent
        else "      -       -       -   -"
    )
    probe = f"{statistics.median(r.probes_ms):6.1f}/{max(r.probes_ms):6.1f}" if r.probes_ms else "-"
    print(
        f"{n:>6} {registry:>5} {r.name:>7} {r.rps:9.0f} {r.p50_ms:7.2f} {r.p99_ms:8.2f} "
        f"{r.max_ms:8.1f} | {ch} | {probe:>13} | {r.rss_mib:6.0f} {r.peak_mib:6.0f}",
        flush=True,
    )


async def run(n: int, registry: str, phase_s: float, base: Path, per_cluster: int) -> None:
    from etcd_server import free_port

    fleet = Fleet(n, per_cluster)
    work = base / f"{registry}-{n}"
    work.mkdir(parents=True)
    writer: Any = FilesWriter(work / "registry") if registry == "files" else EtcdWriter(work)
    t0 = time.perf_counter()
    await populate(writer, fleet)
    populate_s = time.perf_counter() - t0
    port, admin_port = free_port(), free_port()
    cfg = work / "gateway.yaml"
    cfg.write_text(config_text(n, registry, writer.where, port, admin_port))
    upstream = subprocess.Popen(
        pinned(0, [sys.executable, "-c", UPSTREAM, *map(str, HOT_PORTS.values())]),
        stdout=subprocess.PIPE,
    )
    assert upstream.stdout is not None and upstream.stdout.readline().startswith(b"ready")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(work / "gateway.log", "wb")  # noqa: SIM115
    started = time.perf_counter()
    gateway = subprocess.Popen(
        pinned(
            1, [sys.executable, "-m", "portway", "gateway", "--config", str(cfg), "--workers", "1"]
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        await wait_http(f"http://127.0.0.1:{port}/", f"{service_name(0)}.bench", 120)
        first = time.perf_counter() - started
        await wait_http(admin + "/readyz", None, 120)
        served_s = time.perf_counter() - started
        rss, peak = rss_kib(gateway.pid)
        print(
            f"{n:>6} {registry:>5} startup: {2 * n} records ({50 * n} distinct endpoints, "
            f"{fleet.clusters} clusters) written in {populate_s:.1f} s; first 200 "
            f"after {first:.2f} s, /readyz 200 after {served_s:.2f} s; RSS {rss / 1024:.0f} MiB "
            f"(peak {peak / 1024:.0f})",
            flush=True,
        )
        churn = Churn(writer, fleet, admin)
        async with aiohttp.ClientSession() as session:
            churn.session = session
            for name, rate, count in (
                ("steady", 0.0, 0),
                ("one", 0.0, 1),
                ("1/s", 1.0, int(phase_s) - 2),
                ("10/s", 10.0, int(phase_s - 2) * 10),
            ):
                show(
                    n,
                    registry,
                    await phase(name, gateway.pid, port, admin, churn, phase_s, rate, count),
                )
    finally:
        gateway.terminate()
        upstream.terminate()
        gateway.wait(30)
        upstream.wait(10)
        await writer.close()
        log.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--registry", nargs="+", default=["files", "etcd"], choices=["files", "etcd"]
    )
    parser.add_argument(
        "--phase-s", type=float, default=10.0, help="seconds per phase (default 10)"
    )
    parser.add_argument(
        "--per-cluster",
        type=int,
        default=PER_CLUSTER,
        help=f"services per cluster (default {PER_CLUSTER}, at most {MAX_PER_CLUSTER}: "
        "one NodePort each)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if not 2 <= args.per_cluster <= MAX_PER_CLUSTER:
        parser.error(f"--per-cluster must be 2-{MAX_PER_CLUSTER}")
    base = Path(tempfile.mkdtemp(prefix="portway-scale-"))
    print(
        "     N   reg   phase       rps  p50 ms   p99 ms   max ms | change→table ms p50 p99 max"
        " seen/sent | probe med/max ms | RSS MiB peak",
        flush=True,
    )
    try:
        for n in args.services:
            for registry in args.registry:
                await run(n, registry, args.phase_s, base, args.per_cluster)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}")


if __name__ == "__main__":
    asyncio.run(main())
