"""Resilience drills: real nodes on 127.0.0.x, a real gateway process, steady load, faults.

Two clusters of two nodes stand for two Kubernetes clusters' NodePorts: `near`
(127.0.0.11-12, the gateway's zone) and `far` (127.0.0.21-22, another region),
all on one port as a NodePort is. An open-loop client sends `RATE` GETs per
second (issue 10's 500) through the gateway while a scenario kills,
black-holes, slows or flaps nodes and brings them back with requests in
flight. Each drill measures failed requests, how long until the faulty nodes
are out of rotation, p99 latency per phase and how long until they serve
again, and asserts every target of issue 10 (see `check`). Each test attaches
its row to its report; the conftest prints the rows as one table at the end
of the session.

The measuring side must not measure itself. The client and the simulated
nodes share this test process and its event loop, so a pause of that loop
is a slow request in the table. The pauses found (per-request timelines of
client, gateway and node, see `latency_bound_ms`) were this process's own
full garbage collections, about once per drill, landing in a measured
window or not: 15-30 ms in a bare harness process, 40-60 ms in pytest with
this module collected (91,000 objects), 120-150 ms with the whole suite
collected (164,000 objects; load ~3). One full collection in the window 1 s
after a black hole made its p99 several ms against a steady 0.2-0.5 ms. The
collector is therefore paused for the drill (`collector_paused`). The admin
API is polled for the rotation state only from the fault until the faulty
nodes are out (`wait_out_of_rotation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.gateway.conftest import free_port, free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
ROOT = Path(__file__).resolve().parents[3]
RATE = 500
NEAR = ("127.0.0.11", "127.0.0.12")
FAR = ("127.0.0.21", "127.0.0.22")
STEADY_S, FAULT_S, RECOVER_S = 1.5, 3.0, 3.5
LATENCY_FLOOR_MS = 5.0
"""The least bound on the p99 one second after a fault (see `latency_bound_ms`)."""


class Mode(enum.Enum):
    UP = "up"
    DOWN = "down"
    BLACK_HOLE = "black-hole"
    SLOW = "slow"


class Node:
    """One node's NodePort: answers `x-node: <address>`; can be killed, darkened or slowed."""

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port
        self.mode = Mode.UP
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.received: list[float] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._serve, self.address, self.port, reuse_address=True
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        body = self.address.encode()
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nx-node: %s\r\n\r\n%s" % (
            len(body),
            body,
            body,
        )
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"GET /drill"):  # not the gateway's health probes
                    self.received.append(time.monotonic())
                if self.mode is Mode.BLACK_HOLE:
                    continue
                if self.mode is Mode.SLOW:
                    await asyncio.sleep(0.4)
                writer.write(answer)
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            asyncio.LimitOverrunError,
            asyncio.CancelledError,  # the loop ending with a connection open
        ):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    def cut_connections(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def set(self, mode: Mode) -> None:
        if mode is Mode.DOWN and self.server is not None:
            self.server.close()
            self.server = None
            self.cut_connections()
        if self.mode is Mode.BLACK_HOLE and mode is not Mode.BLACK_HOLE:
            self.cut_connections()  # back from the dark: what it held is reset
        if mode is not Mode.DOWN and self.server is None:
            await self.start()
        self.mode = mode

    async def stop(self) -> None:
        await self.set(Mode.DOWN)


@dataclass
class Sample:
    started: float
    latency: float
    status: int
    node: str


@dataclass
class Load:
    """An open-loop HTTP/1.1 client over keep-alive connections (raw streams: cheap)."""

    port: int
    rate: float
    samples: list[Sample] = field(default_factory=list)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    running: bool = True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while self.running:
            n += 1
            await asyncio.sleep(max(0.0, start + n / self.rate - loop.time()))
            task = loop.create_task(self.one())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def one(self) -> None:
        started = time.monotonic()
        status, node = 0, ""
        conn = self.idle.pop() if self.idle else None
        try:
            async with asyncio.timeout(5.0):
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", self.port)
                reader, writer = conn
                writer.write(b"GET /drill HTTP/1.1\r\nHost: app.example\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ")[1])
                headers = dict(
                    (k.lower(), v.strip()) for k, _, v in (h.partition(":") for h in lines[1:] if h)
                )
                await reader.readexactly(int(headers.get("content-length", "0")))
                node = headers.get("x-node", "")
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                else:
                    self.idle.append(conn)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
            if conn is not None:
                conn[1].transport.abort()
        self.samples.append(Sample(started, time.monotonic() - started, status, node))

    async def stop(self) -> None:
        self.running = False
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=6)
        for _, writer in self.idle:
            writer.close()


def config_text(port: int, admin: int, node_port: int, health_check: bool = True) -> str:
    def ep(address: str, cluster: str, region: str) -> str:
        return (
            f"      - {{address: {address}, port: {node_port}, cluster: {cluster}, "
            f"region: {region}, zone: {region}a}}\n"
        )

    endpoints = "".join(ep(a, "near", "r1") for a in NEAR) + "".join(
        ep(a, "far", "r2") for a in FAR
    )
    check = (
        """    healthCheck:
      path: /healthz
      interval: 1s
      unhealthyInterval: 250ms
      timeout: 250ms
      healthyThreshold: 2
      unhealthyThreshold: 2
"""
        if health_check
        else ""
    )
    return f"""\
version: 1
gateway: {{region: r1, zone: r1a}}
listeners:
  - {{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}
routes:
  - name: app
    rules:
      - backendRefs: [{{name: app}}]
        timeouts: {{request: 5s}}
        retry:
          attempts: 2
          perTryTimeout: 250ms
          on: [connect-failure, reset, gateway-error]
          backoffBase: 5ms
          backoffMax: 20ms
backends:
  - name: app
    endpoints:
{endpoints}    locality: {{prefer: zone, slowStart: 1500ms}}
{check}admin: {{address: 127.0.0.1, port: {admin}}}
"""


class GatewayProcess:
    def __init__(
        self, tmp: Path, port: int, admin: int, node_port: int, health_check: bool = True
    ) -> None:
        self.port, self.admin = port, admin
        self.config = tmp / "gateway.yaml"
        self.config.write_text(config_text(port, admin, node_port, health_check))
        self.log = tmp / "gateway.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "portway", "gateway", "--config", str(self.config)]
        args += ["--workers", "1"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=out, cwd=ROOT, env=env)

    async def ready(self) -> None:
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()
                with contextlib.suppress(OSError, aiohttp.ClientError):
                    async with s.get(f"http://127.0.0.1:{self.admin}/readyz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise AssertionError("gateway not ready:\n" + self.log.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


def cpu_wait_s(pid: int) -> float | None:
    """How long the main thread of process `pid` has waited, runnable, for a CPU (seconds;
    the kernel's schedstat run delay); None where the kernel does not say."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


async def wait_out_of_rotation(admin: int, keys: set[str], since: float) -> float:
    """Poll /endpoints until every key in `keys` is out of rotation; seconds from `since`.

    Polled only from the fault until then (tenths of a second), not while
    latency is measured for the bounds: the admin API answers on the
    gateway's event loop, and 50 polls a second moved the steady p99 from
    ~0.5 to ~1 ms.
    """
    async with aiohttp.ClientSession() as s:
        while True:
            with contextlib.suppress(OSError, aiohttp.ClientError, ValueError):
                async with s.get(f"http://127.0.0.1:{admin}/endpoints") as r:
                    data = await r.json()
                if keys <= {e["key"] for e in data["backends"]["app"] if not e["available"]}:
                    return time.monotonic() - since
            await asyncio.sleep(0.02)


@dataclass
class CpuWaits:
    """The CPU run delay of the gateway's and this process's main threads, sampled."""

    gateway_pid: int
    samples: list[tuple[float, float]] = field(default_factory=list)
    """(when, both threads' run delay summed, seconds)."""

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            waits = [cpu_wait_s(self.gateway_pid), cpu_wait_s(os.getpid())]
            if None not in waits:
                self.samples.append((time.monotonic(), sum(w or 0.0 for w in waits)))
            await asyncio.sleep(0.02)

    def ms_per_s(self, start: float, end: float) -> float | None:
        """Milliseconds per second the two threads waited for a CPU in [start, end)."""
        inside = [(t, w) for t, w in self.samples if start <= t < end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        (t0, w0), (t1, w1) = inside[0], inside[-1]
        return round((w1 - w0) * 1000 / (t1 - t0), 1)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection in this process while a drill measures (module docstring).

    What exists is frozen first (a collection would skip it anyway) and one
    collection runs afterwards; a drill's garbage with cycles (tasks, streams,
    exceptions) is a few MB.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        gc.collect()


def p99(samples: list[Sample]) -> float:
    lat = sorted(s.latency for s in samples)
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0


def latency_bound_ms(steady_p99_ms: float) -> float:
    """Issue 10's bound on the p99 from 1 s after a black hole (or slow node) until
    recovery: 5x the steady p99, but never under `LATENCY_FLOOR_MS`.

    The floor is this machine's noise, not the gateway's. A request here is
    five wake-ups on 2 shared cores (client, gateway, node, gateway, client);
    the steady p99 is 0.2-0.5 ms when the machine is quiet, so 5x is 1-2.5 ms,
    less than what a window with no fault at all reaches. Measured with this
    harness (collector paused, 500 rps, nothing faulty): with the drill alone
    on the machine (load average under 2), 136 windows of 1.5-3.5 s had p99s
    from 0.24 to 5.2 ms, median 0.62, 90th percentile 2.3, 99th 4.9; with
    other test suites running (load 3-4.7), 64 windows reached 20.8 ms,
    median 1.25. `LATENCY_FLOOR_MS` is 5 ms, the quiet windows' maximum
    rounded down; the bound is not made for a machine busy with other work
    (the row's `cpu_wait_ms_per_s` shows how busy it was). What the gateway
    itself adds was timed per request (client, gateway and node timestamps):
    in the window from 1 s after a black hole no request reached the dark
    node, none was retried or opened a connection, and over 2-3 runs per
    scenario the pooled p99 was 1.2-1.5x the steady one (e.g. 0.57 against
    0.41 ms, one node black-holed).
    """
    return round(max(5 * steady_p99_ms, LATENCY_FLOOR_MS), 1)


Fault = Callable[[dict[str, Node], float], Any]


@dataclass
class Scenario:
    name: str
    faulty: tuple[str, ...]
    fault: Mode
    refusing: bool
    flap: bool = False
    health_check: bool = True


SCENARIOS = [
    Scenario("kill one node", (NEAR[0],), Mode.DOWN, refusing=True),
    Scenario("kill a cluster", NEAR, Mode.DOWN, refusing=True),
    Scenario("black-hole one node", (NEAR[0],), Mode.BLACK_HOLE, refusing=False),
    Scenario("black-hole a cluster", NEAR, Mode.BLACK_HOLE, refusing=False),
    Scenario("slow one node", (NEAR[0],), Mode.SLOW, refusing=False),
    Scenario("flap one node", (NEAR[0],), Mode.DOWN, refusing=True, flap=True),
    Scenario(
        "black-hole one node, no healthCheck",
        (NEAR[0],),
        Mode.BLACK_HOLE,
        refusing=False,
        health_check=False,
    ),
]


@pytest.fixture
async def nodes() -> AsyncIterator[dict[str, Node]]:
    port = free_port(NEAR[0])
    made = {a: Node(a, port) for a in (*NEAR, *FAR)}
    for node in made.values():
        await node.start()
    yield made
    for node in made.values():
        await node.stop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_drill(
    scenario: Scenario, nodes: dict[str, Node], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    node_port = next(iter(nodes.values())).port
    port, admin = free_ports(2)
    gw = GatewayProcess(tmp_path, port, admin, node_port, scenario.health_check)
    try:
        await gw.ready()
        with collector_paused():
            row = await run_drill(scenario, nodes, gw)
    finally:
        gw.stop()
    request.node.user_properties.append(("drill_row", row))  # the conftest's table
    check(scenario, row)
    changes = [r for r in gw.log_lines() if r.get("msg") == "endpoint health changed"]
    flapping = scenario.flap
    assert flapping or len(changes) <= 2 * len(scenario.faulty), changes  # once per change


async def run_drill(
    scenario: Scenario, nodes: dict[str, Node], gw: GatewayProcess
) -> dict[str, Any]:
    load = Load(gw.port, RATE)
    cpu = CpuWaits(gw.proc.pid)
    stop_cpu = asyncio.Event()
    sampler = asyncio.create_task(cpu.run(stop_cpu))
    runner = asyncio.create_task(load.run())
    await asyncio.sleep(0.5)  # warm-up: pools filled, first probes answered
    warm = len(load.samples)
    warm_end = time.monotonic()
    await asyncio.sleep(STEADY_S)
    keys = {f"{'near' if a in NEAR else 'far'}/{a}:{nodes[a].port}" for a in scenario.faulty}
    t0 = time.monotonic()
    rotation = asyncio.create_task(wait_out_of_rotation(gw.admin, keys, t0))
    for a in scenario.faulty:
        await nodes[a].set(scenario.fault)
    if scenario.flap:
        deadline = t0 + FAULT_S
        up = False
        while time.monotonic() < deadline - 0.5:
            await asyncio.sleep(0.5)
            up = not up
            for a in scenario.faulty:
                await nodes[a].set(Mode.UP if up else Mode.DOWN)
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    else:
        await asyncio.sleep(FAULT_S)
    t1 = time.monotonic()
    rotation.cancel()
    for a in scenario.faulty:
        await nodes[a].set(Mode.UP)
    await asyncio.sleep(RECOVER_S)
    stop_cpu.set()
    await sampler
    await load.stop()
    runner.cancel()
    samples = load.samples[warm:]
    steady = [s for s in samples if s.started < t0]
    first2 = [s for s in samples if t0 <= s.started < t0 + 2.0]
    late = [s for s in samples if t0 + 1.0 <= s.started < t1]
    after = [s for s in samples if s.started >= t1]
    faulty = set(scenario.faulty)
    steady_share = sum(s.node in faulty for s in steady) / max(1, len(steady))
    back = [s.started - t1 for s in after if s.node in faulty]
    first_share = None
    if back:
        served = [s for s in after if min(back) <= s.started - t1 < min(back) + 0.5]
        share = sum(s.node in faulty for s in served) / max(1, len(served))
        first_share = round(share / max(steady_share, 1e-9), 2)
    full = None
    for w in range(int(RECOVER_S / 0.25) - 1):
        window = [s for s in after if w * 0.25 <= s.started - t1 < w * 0.25 + 0.5]
        share = sum(s.node in faulty for s in window) / max(1, len(window))
        if share >= 0.8 * steady_share:
            full = w * 0.25 + 0.5
            break
    last_received = max(
        (t for a in scenario.faulty for t in nodes[a].received if t0 <= t < t1), default=t0
    )
    out_s = rotation.result() if rotation.done() and not rotation.cancelled() else None
    p99_steady_ms = round(p99(steady) * 1000, 1)
    return {
        "scenario": scenario.name,
        "rate": RATE,
        "requests": len(samples),
        "failed": sum(s.status != 200 for s in samples),
        "failures": sorted(
            (round(s.started - t0, 3), s.status, round(s.latency, 3))
            for s in samples
            if s.status != 200
        )[:5],
        "out_of_rotation_s": round(out_s, 3) if out_s is not None else None,
        "last_request_at_faulty_s": round(last_received - t0, 3),
        "p99_steady_ms": p99_steady_ms,
        "p99_first_2s_ms": round(p99(first2) * 1000, 1),
        "p99_after_1s_ms": round(p99(late) * 1000, 1),
        "latency_bound_ms": latency_bound_ms(p99_steady_ms),
        "p99_recovery_ms": round(p99(after) * 1000, 1),
        "back_s": round(min(back), 3) if back else None,
        "full_share_s": full,
        "first_half_s_share": first_share,
        "steady_share": round(steady_share, 2),
        "cpu_wait_ms_per_s": (cpu.ms_per_s(warm_end, t0), cpu.ms_per_s(t0 + 1.0, t1)),
    }


def check(scenario: Scenario, row: dict[str, Any]) -> None:
    """Issue 10's targets, with the measured row in every failure message.

    Back "gradually": in the first half second the recovered nodes serve,
    they get at most 0.6 of their steady share (slow start: measured
    0.17-0.32; all at once would be ~1). A flapping node is exempt: it was
    back, ramping, since the fault phase's last flap.

    `cpu_wait_ms_per_s` (ms per second the gateway's and this process's main
    threads waited for a CPU, steady and 1 s after the fault) is not judged:
    it says how busy the machine was when a latency bound fails.
    """
    assert row["failed"] == 0, row
    assert row["out_of_rotation_s"] is not None and row["out_of_rotation_s"] <= 1.0, row
    if scenario.fault in (Mode.BLACK_HOLE, Mode.SLOW):
        assert row["last_request_at_faulty_s"] <= 1.0, row
        assert row["p99_first_2s_ms"] <= 1000, row
        assert row["p99_after_1s_ms"] <= row["latency_bound_ms"], row
    else:
        assert row["p99_first_2s_ms"] <= 100, row
    assert row["back_s"] is not None and row["back_s"] <= 3.0, row
    assert row["full_share_s"] is not None and row["full_share_s"] <= 3.5, row
    if not scenario.flap:  # gradually: in their first half second back, well under their share
        assert row["first_half_s_share"] <= 0.6, row
