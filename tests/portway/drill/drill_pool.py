"""The shipped drills, run for the e2e tests: several at once, each on a loopback net of its own.

Theory of operation. A drill is mostly waiting (traffic paced at a few
hundred requests a second, faults on a timeline); most of its CPU goes into
starting (the drill's and the gateway's three interpreters importing), so
the runs a test module needs are started together, `PARALLEL` at a time,
longest first, each process start at least `STAGGER_S` after the last one
(no two gateways boot at once), and each test waits for its own. Measured
under the load of other test runs on 2 cores (load average 2.4-4.5): three
at a time, unstaggered, failed 2 runs of 8 (black-holed-cluster's 50 ms
settle; one failed request of 2,445 in local-first-failover, its gateway
slow while others booted); two, staggered, passed 5 of 5 in 56-70 s. Two
runs must then never share an address or a port, nor a run of this session
with one of another session on the same machine: each run gets a copy of its
scenario and gateway config with every `127.0.` address moved to `127.N.`, N
picked at random among nets whose gateway ports are free here (listeners,
admin, the drill's etcd), and never two runs of one session on the same N.
The simulated nodes, the gateway and the etcd member all bind in that net;
the scenarios' ports stay as written.

A run is named in `RUNS`; the test module marks each test with the runs it
judges (`@pytest.mark.drill("zone-loss")`), and only the runs of the tests
selected are started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portway.drill.gateway_process import GatewayProcess
from portway.drill.loader import load_scenario
from portway.port_holder import port_taken

ROOT = Path(__file__).resolve().parents[3]
DRILLS = ROOT / "config" / "drills"
PARALLEL = 2
STAGGER_S = 2.5
DRILL_TIMEOUT_S = 90


class StartGate:
    """Spaces process starts at least `gap_s` apart, across the pool's threads."""

    def __init__(self, gap_s: float) -> None:
        self.gap_s = gap_s
        self._lock = threading.Lock()
        self._last = 0.0

    def wait_turn(self) -> None:
        with self._lock:
            time.sleep(max(0.0, self._last + self.gap_s - time.monotonic()))
            self._last = time.monotonic()


START_GATE = StartGate(STAGGER_S)


@dataclass(frozen=True, slots=True)
class DrillRun:
    """What `portway drill --json` gave: exit code, the report (None: no JSON), stderr;
    against a gateway started by hand, its pid and whether it still ran afterwards."""

    code: int
    body: dict[str, Any] | None
    stderr: str
    workdir: Path
    gateway_pid: int | None = None
    gateway_alive: bool = False


class Nets:
    """Loopback nets 127.N.0.0/16 handed to runs: free here, never the same twice."""

    def __init__(self) -> None:
        self._given: set[int] = set()
        self._rng = random.Random()

    def take(self, name: str) -> str:
        """A prefix `127.N.` where drill `name`'s gateway ports are free."""
        config = load_scenario(DRILLS / f"{name}.yaml").gateway_config
        ports = [lst.port for lst in config.listeners] + [config.admin.port]
        for endpoint in config.registry.endpoints:
            port = int(endpoint.rstrip("/").rsplit(":", 1)[1])
            ports += [port, port + 1]  # the drill's etcd: client and peer ports
        for _ in range(200):
            net = self._rng.randrange(64, 255)
            if net in self._given:
                continue
            if all(port_taken(f"127.{net}.0.1", port) is None for port in ports):
                self._given.add(net)
                return f"127.{net}."
        raise RuntimeError("no free loopback net for a drill")


def isolated(name: str, workdir: Path, prefix: str) -> Path:
    """A copy of drill `name` and its gateway config in `workdir`, every `127.0.` address
    moved to `prefix`; the copy's path."""
    source = DRILLS / f"{name}.yaml"
    gateway = load_scenario(source).gateway_config_path
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / source.name
    copy = workdir / gateway.relative_to(DRILLS)
    copy.parent.mkdir(parents=True, exist_ok=True)
    for original, target in ((source, scenario), (gateway, copy)):
        target.write_text(original.read_text(encoding="utf-8").replace("127.0.", prefix))
    return scenario


def run_drill(scenario: Path, workdir: Path, *extra: str) -> DrillRun:
    START_GATE.wait_turn()
    res = subprocess.run(
        [sys.executable, "-m", "portway", "drill", str(scenario), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=DRILL_TIMEOUT_S,
        cwd=ROOT,
    )
    try:
        body = json.loads(res.stdout)
    except ValueError:
        body = None
    return DrillRun(res.returncode, body, res.stderr, workdir)


Run = Callable[[Path, Nets], dict[str, DrillRun]]


def drill_alone(name: str) -> Run:
    """A run of one drill that starts its own gateway; its HTML report in its workdir."""

    def run(workdir: Path, nets: Nets) -> dict[str, DrillRun]:
        scenario = isolated(name, workdir, nets.take(name))
        return {name: run_drill(scenario, workdir, "--html", str(workdir / "report.html"))}

    return run


def drills_on_one_running_gateway(*names: str) -> Run:
    """One gateway started by hand (the first drill's config: the drills must share it),
    then each drill in turn against it through its admin API and files registry."""

    def run(workdir: Path, nets: Nets) -> dict[str, DrillRun]:
        prefix = nets.take(names[0])
        scenarios = [isolated(name, workdir / name, prefix) for name in names]
        first = load_scenario(scenarios[0])
        gateway_dir = workdir / "gateway"
        (gateway_dir / "registry").mkdir(parents=True)
        shutil.copy(first.gateway_config_path, gateway_dir / "gateway.yaml")
        admin = first.gateway_config.admin
        admin_url = f"http://{admin.address}:{admin.port}"
        START_GATE.wait_turn()
        gateway = GatewayProcess(gateway_dir, "gateway.yaml")
        gateway.start()
        proc = gateway.proc
        assert proc is not None
        out: dict[str, DrillRun] = {}
        try:
            for name, scenario in zip(names, scenarios, strict=True):
                ran = run_drill(
                    scenario,
                    scenario.parent,
                    *("--gateway-admin", admin_url, "--registry", str(gateway_dir / "registry")),
                    *("--html", str(scenario.parent / "report.html")),
                )
                alive = proc.poll() is None
                out[name] = dataclasses.replace(ran, gateway_pid=proc.pid, gateway_alive=alive)
        finally:
            asyncio.run(gateway.stop())
        return out

    return run


RUNS: dict[str, tuple[float, Run]] = {
    # name: (seconds it takes, roughly: the longest start first; how to run it)
    "running-gateway": (26, drills_on_one_running_gateway("local-first-failover", "zone-loss")),
    "black-holed-cluster": (14, drill_alone("black-holed-cluster")),
    "hybrid-data-residency": (13, drill_alone("hybrid-data-residency")),
    "canary-rollback": (12, drill_alone("canary-rollback")),
    "canary-rollout": (13, drill_alone("canary-rollout")),
    "etcd-outage": (12, drill_alone("etcd-outage")),
    "registry-outage": (10, drill_alone("registry-outage")),
    "certificate-rotation": (8, drill_alone("certificate-rotation")),
}


class DrillPool:
    """The runs a module asked for, started at once, `PARALLEL` at a time."""

    def __init__(self, names: list[str], workdir: Path) -> None:
        self._nets = Nets()
        self._executor = ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="drill")
        self._futures: dict[str, Future[dict[str, DrillRun]]] = {}
        for name in sorted(set(names), key=lambda n: -RUNS[n][0]):
            self._futures[name] = self._executor.submit(RUNS[name][1], workdir / name, self._nets)

    def result(self, run: str, drill: str | None = None) -> DrillRun:
        """The outcome of `drill` (default: the run's only drill) in `run`."""
        return self._futures[run].result()[drill or run]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
