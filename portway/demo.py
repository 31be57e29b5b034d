"""`portway demo`: a multi-cluster failover drill on loopback, start to finish.

It runs the real thing with simulated clusters in place of Kubernetes: the
embedded demo config, a files registry in a temporary directory, the
simulated clusters' controllers publishing records with a TTL, and a real
`portway gateway` process. Client traffic runs throughout while the demo walks
through phases (steady, canary override, a node lost, a whole cluster lost,
the cluster back) and reports what users saw in each: requests, failures,
where traffic went, latency, and how long failover and recovery took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from portway.drill.report import DrillReport, render_html
from portway.drill.scripted import scripted_report
from portway.drill.timeline import FaultWindow
from portway.drill.verdict import Verdict
from portway.port_holder import port_taken
from portway.registry.files import FilesRegistry
from portway.simcluster import SimNode, SimulatedCluster
from portway.traffic import Sample, Summary, TrafficGenerator, summarize

GATEWAY_ADDRESS, GATEWAY_PORT, ADMIN_PORT = "127.0.0.1", 18080, 19901
GATEWAY_URL = f"http://{GATEWAY_ADDRESS}:{GATEWAY_PORT}/"
ADMIN_URL = f"http://{GATEWAY_ADDRESS}:{ADMIN_PORT}"
RECORD_TTL_S = 2.0


class DemoError(Exception):
    """The demo cannot run here; the message is one line saying what is in the way."""


def describe_summary(summary: Summary) -> str:
    """`"412 requests, 0 failed; alpha 70%, beta 30%; p50 1.2 ms, p99 4.8 ms"`."""
    share = ", ".join(f"{name} {part:.0%}" for name, part in summary.share.items()) or "none"
    return (
        f"{summary.requests} requests, {summary.failed} failed; served by {share}; "
        f"p50 {summary.p50_ms:.1f} ms, p99 {summary.p99_ms:.1f} ms"
    )


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """One phase of the demo: what was done, and what users saw meanwhile."""

    name: str
    action: str
    summary: Summary
    expectation: str
    met: bool


@dataclass(slots=True)
class DemoReport:
    phases: list[PhaseResult] = field(default_factory=list)
    failover_s: float | None = None
    recovery_s: float | None = None
    explain: list[str] = field(default_factory=list)
    drill: DrillReport | None = None
    html_report: str | None = None

    @property
    def ok(self) -> bool:
        return all(p.met for p in self.phases) and self.failover_s is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failover_s": self.failover_s,
            "recovery_s": self.recovery_s,
            "explain": self.explain,
            "html_report": self.html_report,
            "phases": [
                {
                    "name": p.name,
                    "action": p.action,
                    "expectation": p.expectation,
                    "met": p.met,
                    "requests": p.summary.requests,
                    "failed": p.summary.failed,
                    "share": dict(p.summary.share),
                    "p50_ms": round(p.summary.p50_ms, 2),
                    "p99_ms": round(p.summary.p99_ms, 2),
                    "errors": dict(p.summary.errors),
                }
                for p in self.phases
            ],
        }


def clusters() -> dict[str, SimulatedCluster]:
    """alpha (the gateway's own zone) and beta, each with the service and its canary."""
    alpha = (
        SimNode("alpha-1", "127.0.0.11", "demo-1a"),
        SimNode("alpha-2", "127.0.0.12", "demo-1a"),
    )
    beta = (SimNode("beta-1", "127.0.0.21", "demo-1b"), SimNode("beta-2", "127.0.0.22", "demo-1b"))
    return {
        "alpha": SimulatedCluster("alpha", "demo", alpha, 30080),
        "beta": SimulatedCluster("beta", "demo", beta, 30080),
        "alpha-canary": SimulatedCluster(
            "alpha", "demo", alpha[:1], 30081, service="web-canary", label="canary"
        ),
        "beta-canary": SimulatedCluster(
            "beta", "demo", beta[:1], 30081, service="web-canary", label="canary"
        ),
    }


class Demo:
    """Owns the simulated clusters, their registry writers and the gateway process."""

    def __init__(self, workdir: Path, *, phase_s: float, log: Callable[[str], None]) -> None:
        self.workdir = workdir
        self.phase_s = phase_s
        self.log = log
        self.clusters = clusters()
        registry_dir = workdir / "demo-registry"
        self.writers = {
            "alpha": FilesRegistry(registry_dir),
            "beta": FilesRegistry(registry_dir),
        }
        self.gateway: subprocess.Popen[bytes] | None = None
        self.report = DemoReport()

    async def publish(self, name: str) -> None:
        cluster = self.clusters[name]
        await self.writers[cluster.name].publish(cluster.record(), RECORD_TTL_S)

    def wanted_ports(self) -> list[tuple[str, int, str]]:
        """Every (address, port) the demo binds, with what it is for."""
        wanted = [
            (GATEWAY_ADDRESS, GATEWAY_PORT, "the demo gateway's listener"),
            (GATEWAY_ADDRESS, ADMIN_PORT, "the demo gateway's admin API"),
        ]
        for cluster in self.clusters.values():
            for node in cluster.nodes:
                wanted.append((node.address, cluster.node_port, f"simulated node {node.name}"))
        return list(dict.fromkeys(wanted))

    def check_ports(self) -> None:
        """Raise `DemoError` naming the first port the demo wants that is taken."""
        for address, port, purpose in self.wanted_ports():
            try:
                taken = port_taken(address, port)
            except OSError as exc:
                raise DemoError(
                    f"cannot bind {address}:{port} for {purpose}: {exc.strerror or exc}"
                ) from None
            if taken is not None:
                raise DemoError(
                    f"{taken} and the demo needs it for {purpose}; stop that program and retry"
                )

    async def start(self) -> None:
        self.check_ports()
        for name, cluster in self.clusters.items():
            await cluster.start()
            await self.publish(name)
        config = self.workdir / "demo.yaml"
        from gateway.config.loader import demo_config_text

        config.write_text(demo_config_text(), encoding="utf-8")
        self.log(f"gateway: portway gateway --config {config} (cwd {self.workdir})")
        self.gateway = subprocess.Popen(
            [sys.executable, "-m", "portway", "gateway", "--config", str(config), "--workers", "1"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "gateway.log", "wb"),  # noqa: SIM115
        )
        await self._wait_ready()

    async def _wait_ready(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                assert self.gateway is not None
                if self.gateway.poll() is not None:
                    raise DemoError(f"the demo gateway exited at startup: {self.last_log()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{ADMIN_URL}/readyz") as resp:
                        if resp.status == 200 and await self._serves(session):
                            return
                await asyncio.sleep(0.1)
        raise DemoError(f"the demo gateway was not ready within {timeout_s:g} s")

    def last_log(self) -> str:
        """The gateway's last log message, for the one line the user reads."""
        try:
            lines = (self.workdir / "gateway.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no log written"
        for line in reversed(lines):
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
                    detail = entry.get("error") or ""
                    return f"{entry.get('msg', '')}{': ' + str(detail) if detail else ''}"
        return lines[-1] if lines else "no log written"

    async def _serves(self, session: aiohttp.ClientSession) -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(GATEWAY_URL) as resp:
                return resp.status == 200
        return False

    async def explain(self) -> list[str]:
        query = {"request": f"GET {GATEWAY_URL}", "from": "127.0.0.1"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{ADMIN_URL}/explain", params=query) as resp,
        ):
            body = await resp.json()
        return [str(step) for step in body.get("steps", [])]

    async def endpoints_of(self, backend: str) -> set[str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{ADMIN_URL}/endpoints") as resp,
        ):
            body = await resp.json()
        return {ep["cluster"] for ep in body["backends"].get(backend, [])}

    async def stop(self) -> None:
        if self.gateway is not None and self.gateway.poll() is None:
            self.gateway.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.gateway.wait, 15)
            except subprocess.TimeoutExpired:
                self.gateway.kill()
        for writer in self.writers.values():
            await writer.close()
        for cluster in self.clusters.values():
            await cluster.stop()


@contextlib.asynccontextmanager
async def traffic(url: str, **kw: Any) -> AsyncIterator[TrafficGenerator]:
    gen = TrafficGenerator(url, **kw)
    await gen.start()
    try:
        yield gen
    finally:
        await gen.stop()


def demo_slow_start_s() -> float:
    """How long a level takes to get its whole share once its endpoints are (back) in
    rotation: the demo backends' locality.slowStart."""
    from gateway.config.loader import demo_config_text, load_config_text

    config = load_config_text(demo_config_text())
    return max(b.locality.slow_start_s for b in config.backends)


def _web_share(summary: Summary) -> dict[str, float]:
    """Share per cluster of the non-canary traffic."""
    web = {k: v for k, v in summary.share.items() if k != "canary"}
    total = sum(web.values())
    return {k: v / total for k, v in web.items()} if total else {}


async def run_phases(demo: Demo) -> DemoReport:
    report = demo.report
    phase_s = demo.phase_s
    report.explain = await demo.explain()

    def add(name: str, action: str, summary: Summary, expectation: str, met: bool) -> None:
        report.phases.append(PhaseResult(name, action, summary, expectation, met))
        demo.log(f"{name}: {describe_summary(summary)}")

    samples: list[Sample] = []
    windows: list[tuple[str, str, float, float, frozenset[str], bool]] = []
    started_at, t_start = time.time(), time.monotonic()
    async with traffic(GATEWAY_URL, concurrency=4) as gen:
        samples = gen.samples
        t0 = time.monotonic()
        await asyncio.sleep(phase_s)
        s = summarize(gen.since(t0))
        web = _web_share(s)
        add(
            "steady",
            "both clusters up; the gateway runs in alpha's zone",
            s,
            "no failures; alpha (local zone) takes all non-canary traffic; ~10% canary",
            s.failed == 0
            and web.get("alpha", 0) >= 0.99
            and 0.02 <= s.share.get("canary", 0) <= 0.25,
        )

        t0 = time.monotonic()
        await demo.clusters["alpha"].stop_node("alpha-2")
        await demo.publish("alpha")
        await asyncio.sleep(0.3)
        t1 = time.monotonic()
        await asyncio.sleep(phase_s)
        s = summarize(gen.since(t1))
        web = _web_share(s)
        t_node = t0  # alpha-2 stays dead until alpha comes back
        add(
            "node lost",
            "alpha-2 dies; alpha's controller publishes it NotReady",
            summarize(gen.since(t0)),
            "no failures; alpha keeps 50% × 1.4 = 70%, 30% spills to beta",
            summarize(gen.since(t0)).failed == 0 and 0.6 <= web.get("alpha", 0) <= 0.8,
        )

        t_loss = time.monotonic()
        for name in ("alpha", "alpha-canary"):
            await demo.clusters[name].stop()
        for key in (
            demo.clusters["alpha"].record().key,
            demo.clusters["alpha-canary"].record().key,
        ):
            await demo.writers["alpha"].abandon(key)
        while time.monotonic() - t_loss < 10 and "alpha" in await demo.endpoints_of("shop"):
            await asyncio.sleep(0.02)
        report.failover_s = (
            time.monotonic() - t_loss if "alpha" not in await demo.endpoints_of("shop") else None
        )
        await asyncio.sleep(phase_s / 2)
        s = summarize(gen.since(t_loss))
        tail = summarize(gen.since(time.monotonic() - phase_s / 2))
        add(
            "cluster lost",
            f"alpha's nodes all die; its controller stops renewing (TTL {RECORD_TTL_S:g} s)",
            s,
            "no failures (retries cover the TTL window); then beta takes 100%",
            s.failed == 0 and _web_share(tail).get("beta", 0) == 1.0,
        )

        t_back = time.monotonic()
        lost = frozenset({"alpha/alpha-1", "alpha/alpha-2", "canary/alpha-1"})
        node = frozenset({"alpha/alpha-2"})
        windows.append(("kill-endpoints", "alpha-2 dies", t_node, t_back, node, True))
        windows.append(("kill-endpoints", "alpha lost", t_loss, t_back, lost, True))
        for name in ("alpha", "alpha-canary"):
            await demo.clusters[name].start()
            await demo.publish(name)
        while time.monotonic() - t_back < 10:
            if any(x.cluster == "alpha" for x in gen.since(t_back)):
                report.recovery_s = time.monotonic() - t_back
                break
            await asyncio.sleep(0.01)
        # a returning level regains its share over the backend's slowStart
        await asyncio.sleep(phase_s + demo_slow_start_s())
        s = summarize(gen.since(t_back))
        tail = summarize(gen.since(time.monotonic() - phase_s / 2))
        add(
            "cluster back",
            "alpha's nodes return and its controller publishes again",
            s,
            "no failures; traffic returns to alpha within 2 s, all of it after slow start",
            s.failed == 0
            and report.recovery_s is not None
            and report.recovery_s <= 2.0
            and _web_share(tail).get("alpha", 0) >= 0.99,
        )

    async with traffic(GATEWAY_URL, concurrency=2, headers={"x-canary": "always"}) as gen:
        t0 = time.monotonic()
        await asyncio.sleep(phase_s / 2)
        s = summarize(gen.since(t0))
        samples = [*samples, *gen.samples]
        windows.append(("header", "x-canary: always", t0, time.monotonic(), frozenset(), False))
        add(
            "canary override",
            "requests carry x-canary: always",
            s,
            "every request goes to the canary",
            s.failed == 0 and s.share.get("canary", 0) == 1.0,
        )
    report.drill = scripted_report(
        name="demo",
        description="portway demo: alpha (local zone) and beta on loopback, files registry",
        admin_url=ADMIN_URL,
        started_at=started_at,
        t0=t_start,
        end=time.monotonic(),
        samples=samples,
        windows=[
            FaultWindow(kind, what, start - t_start, end - t_start, target, moves)
            for kind, what, start, end, target, moves in windows
        ],
        verdicts=[
            Verdict(p.name, p.expectation, describe_summary(p.summary), p.met)
            for p in report.phases
        ],
    )
    return report


async def run_demo(
    *,
    phase_s: float = 2.0,
    log: Callable[[str], None] = print,
    html_path: Path | None = None,
    keep: bool = False,
    on_report: Callable[[DemoReport], None] | None = None,
) -> DemoReport:
    """Run the whole demo in a temporary directory; always cleans up after itself.

    The drill report's HTML page is written to `html_path` when given;
    `on_report` sees the report as soon as the phases are over; with `keep`
    the clusters, their controllers and the gateway then stay up until the
    task is cancelled (Ctrl-C), for exploring.
    """
    with tempfile.TemporaryDirectory(prefix="portway-demo-") as tmp:
        demo = Demo(Path(tmp), phase_s=phase_s, log=log)
        try:
            await demo.start()
            report = await run_phases(demo)
            if html_path is not None and report.drill is not None:
                html_path.write_text(render_html(report.drill), encoding="utf-8")
                report.html_report = str(html_path.resolve())
            if on_report is not None:
                on_report(report)
            if keep:
                await asyncio.Event().wait()
            return report
        except (aiohttp.ClientError, OSError) as exc:
            # the gateway or a simulated node went away mid-demo: one line, not a traceback
            reason = str(exc).strip() or type(exc).__name__
            raise DemoError(
                f"the demo stopped: {reason}; the gateway said: {demo.last_log()}"
            ) from None
        finally:
            await demo.stop()
            if os.environ.get("PORTWAY_DEMO_KEEP_LOG"):
                log((Path(tmp) / "gateway.log").read_text(errors="replace")[-4000:])
