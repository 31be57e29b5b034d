"""Resilience drills: real nodes on 127.0.0.x, a real gateway process, steady load, faults.

Two clusters of two nodes stand for two Kubernetes clusters' NodePorts: `near`
(127.0.0.11-12, the gateway's zone) and `far` (127.0.0.21-22, another region),
all on one port as a NodePort is. An open-loop client sends `RATE` GETs per
second through the gateway while a scenario kills, black-holes, slows or flaps
nodes and brings them back with requests in flight. Each drill measures
failed requests, how long until the faulty nodes are out of rotation, p99
latency per phase and how long until they serve again, and asserts the
targets of issue 10 (see `check`). `DRILL_TABLE` collects the rows; the last
test prints them (run with `-s` to see the table).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
ROOT = Path(__file__).resolve().parents[3]
RATE = 300
NEAR = ("127.0.0.11", "127.0.0.12")
FAR = ("127.0.0.21", "127.0.0.22")
STEADY_S, FAULT_S, RECOVER_S = 1.5, 3.0, 3.5
DRILL_TABLE: list[dict[str, Any]] = []


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


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


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


async def watch_out_of_rotation(
    admin: int, keys: set[str], since: float, stop: asyncio.Event, seen: list[float]
) -> None:
    """Poll /endpoints; record when every faulty endpoint is first seen out of rotation."""
    async with aiohttp.ClientSession() as s:
        while not stop.is_set():
            with contextlib.suppress(OSError, aiohttp.ClientError, ValueError):
                async with s.get(f"http://127.0.0.1:{admin}/endpoints") as r:
                    data = await r.json()
                out = {e["key"] for e in data["backends"]["app"] if not e["available"]}
                if keys <= out and not seen:
                    seen.append(time.monotonic() - since)
            await asyncio.sleep(0.02)


def p99(samples: list[Sample]) -> float:
    lat = sorted(s.latency for s in samples)
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0


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
async def test_drill(scenario: Scenario, nodes: dict[str, Node], tmp_path: Path) -> None:
    node_port = next(iter(nodes.values())).port
    gw = GatewayProcess(tmp_path, free_port(), free_port(), node_port, scenario.health_check)
    try:
        await gw.ready()
        row = await run_drill(scenario, nodes, gw)
    finally:
        gw.stop()
    DRILL_TABLE.append(row)
    check(scenario, row)
    changes = [r for r in gw.log_lines() if r.get("message") == "endpoint health changed"]
    flapping = scenario.flap
    assert flapping or len(changes) <= 2 * len(scenario.faulty), changes  # once per change


async def run_drill(
    scenario: Scenario, nodes: dict[str, Node], gw: GatewayProcess
) -> dict[str, Any]:
    load = Load(gw.port, RATE)
    runner = asyncio.create_task(load.run())
    await asyncio.sleep(0.5)  # warm-up: pools filled, first probes answered
    warm = len(load.samples)
    await asyncio.sleep(STEADY_S)
    keys = {f"{'near' if a in NEAR else 'far'}/{a}:{nodes[a].port}" for a in scenario.faulty}
    t0 = time.monotonic()
    stop_watch = asyncio.Event()
    seen: list[float] = []
    watcher = asyncio.create_task(watch_out_of_rotation(gw.admin, keys, t0, stop_watch, seen))
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
    for a in scenario.faulty:
        await nodes[a].set(Mode.UP)
    await asyncio.sleep(RECOVER_S)
    stop_watch.set()
    await watcher
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
    return {
        "scenario": scenario.name,
        "requests": len(samples),
        "failed": sum(s.status != 200 for s in samples),
        "failures": sorted(
            (round(s.started - t0, 3), s.status, round(s.latency, 3))
            for s in samples
            if s.status != 200
        )[:5],
        "out_of_rotation_s": round(seen[0], 3) if seen else None,
        "last_request_at_faulty_s": round(last_received - t0, 3),
        "p99_steady_ms": round(p99(steady) * 1000, 1),
        "p99_first_2s_ms": round(p99(first2) * 1000, 1),
        "p99_after_1s_ms": round(p99(late) * 1000, 1),
        "p99_recovery_ms": round(p99(after) * 1000, 1),
        "back_s": round(min(back), 3) if back else None,
        "full_share_s": full,
        "steady_share": round(steady_share, 2),
    }


def check(scenario: Scenario, row: dict[str, Any]) -> None:
    """Issue 10's targets, with the measured row in every failure message."""
    assert row["failed"] == 0, row
    if not scenario.flap:
        assert row["out_of_rotation_s"] is not None and row["out_of_rotation_s"] <= 1.0, row
    if scenario.fault in (Mode.BLACK_HOLE, Mode.SLOW):
        assert row["last_request_at_faulty_s"] <= 1.0, row
        assert row["p99_first_2s_ms"] <= 1000, row
        # 5x the steady p99, floored: on a shared 2-core machine the steady p99 itself
        # moves between 1 and 100 ms from run to run; 50 ms is still 5x below the
        # 250 ms per-try timeout every request would pay without ejection
        assert row["p99_after_1s_ms"] <= max(5 * row["p99_steady_ms"], 50.0), row
    else:
        assert row["p99_first_2s_ms"] <= 100, row
    assert row["back_s"] is not None and row["back_s"] <= 3.0, row
    assert row["full_share_s"] is not None and row["full_share_s"] <= 3.5, row


def test_zz_print_drill_table() -> None:
    """The measured table (pytest -s shows it); runs last in this module."""
    if not DRILL_TABLE:
        pytest.skip("no drill ran in this session")
    cols = list(DRILL_TABLE[0])
    print()
    print(" | ".join(cols))
    for row in DRILL_TABLE:
        print(" | ".join(str(row[c]) for c in cols))
