"""`portway demo`: a multi-cluster failover drill on loopback, start to finish.

It runs the real thing with simulated clusters in place of Kubernetes
(`portway.demo_site`: the embedded demo config, a files registry in a
temporary directory, the simulated clusters' controllers publishing records
with a TTL, and a real `portway gateway` process). Client traffic runs
throughout while the demo walks through phases (steady, canary override, a
node lost, a whole cluster lost, the cluster back) and reports what users saw
in each: requests, failures, where traffic went, latency, and how long
failover and recovery took.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from portway.demo_site import (
    ADMIN_URL,
    GATEWAY_URL,
    RECORD_TTL_S,
    DemoError,
    DemoSite,
    demo_slow_start_s,
)
from portway.drill.report import DrillReport, render_html
from portway.drill.scripted import scripted_report
from portway.drill.timeline import FaultWindow
from portway.drill.verdict import Verdict
from portway.traffic import Sample, Summary, TrafficGenerator, summarize


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


@contextlib.asynccontextmanager
async def traffic(url: str, **kw: Any) -> AsyncIterator[TrafficGenerator]:
    gen = TrafficGenerator(url, **kw)
    await gen.start()
    try:
        yield gen
    finally:
        await gen.stop()


def _web_share(summary: Summary) -> dict[str, float]:
    """Share per cluster of the non-canary traffic."""
    web = {k: v for k, v in summary.share.items() if k != "canary"}
    total = sum(web.values())
    return {k: v / total for k, v in web.items()} if total else {}


async def run_phases(site: DemoSite, phase_s: float) -> DemoReport:
    """Walk the phases against a started site; each phase judged by its expectation."""
    report = DemoReport()
    report.explain = await site.explain()

    def add(name: str, action: str, summary: Summary, expectation: str, met: bool) -> None:
        report.phases.append(PhaseResult(name, action, summary, expectation, met))
        site.log(f"{name}: {describe_summary(summary)}")

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
        await site.clusters["alpha"].stop_node("alpha-2")
        await site.publish("alpha")
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
            await site.clusters[name].stop()
        for key in (
            site.clusters["alpha"].record().key,
            site.clusters["alpha-canary"].record().key,
        ):
            await site.writers["alpha"].abandon(key)
        while time.monotonic() - t_loss < 10 and "alpha" in await site.endpoints_of("shop"):
            await asyncio.sleep(0.02)
        report.failover_s = (
            time.monotonic() - t_loss if "alpha" not in await site.endpoints_of("shop") else None
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
            await site.clusters[name].start()
            await site.publish(name)
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
        site = DemoSite(Path(tmp), log=log)
        try:
            await site.start()
            report = await run_phases(site, phase_s)
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
                f"the demo stopped: {reason}; the gateway said: {site.last_log()}"
            ) from None
        finally:
            await site.stop()
            if os.environ.get("PORTWAY_DEMO_KEEP_LOG"):
                log(site.gateway.log_path.read_text(errors="replace")[-4000:])
