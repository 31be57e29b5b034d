"""Run a drill: set up the site, send traffic, play the fault timeline, judge, report.

The runner is the thin asyncio part around the pure pieces: `DrillSite`
brings up the clusters, controllers and gateway; the `TrafficGenerator` sends
the scenario's traffic; the timeline task injects and recovers each fault at
its time (recording when it really happened, which is what the report
plots); `verdict` judges the samples afterwards. Whatever happens, every
fault still on is recovered and the site is torn down before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from portway.drill.faults import Injection, bind
from portway.drill.loader import FAILOVER_KINDS, LoadedScenario
from portway.drill.report import DrillReport
from portway.drill.scenario import Scenario, scaled
from portway.drill.site import DrillSite
from portway.drill.timeline import FaultWindow, buckets
from portway.drill.verdict import judge, measure
from portway.traffic import Sample, Summary, TrafficGenerator, summarize

TICK_S = 0.25


@dataclass(frozen=True, slots=True)
class Tick:
    """What the live view shows: progress, the last second's traffic, faults on now."""

    elapsed_s: float
    duration_s: float
    total: int
    failed: int
    last_second: Summary
    faults_on: tuple[str, ...]


async def run_drill(
    loaded: LoadedScenario,
    *,
    admin_url: str | None = None,
    registry_dir: Path | None = None,
    duration_s: float | None = None,
    on_tick: Callable[[Tick], None] | None = None,
    log: Callable[[str], None] = print,
) -> DrillReport:
    """Run the scenario (scaled to `duration_s` when given) and return its report."""
    scenario = loaded.scenario if duration_s is None else scaled(loaded.scenario, duration_s)
    with tempfile.TemporaryDirectory(prefix="portway-drill-") as tmp:
        site = DrillSite(loaded, Path(tmp), admin_url=admin_url, registry_dir=registry_dir, log=log)
        injections: list[Injection] = []
        try:
            await site.start()
            injections = [bind(f, site) for f in scenario.faults]
            samples, t0, started_at = await _play(scenario, injections, on_tick, site)
        finally:
            for injection in injections:
                await injection.stop_probe()
                if injection.injected_at is not None and injection.recovered_at is None:
                    with contextlib.suppress(Exception):
                        await injection.recover()
            await site.stop()
    duration = scenario.traffic.duration_s
    windows = [
        FaultWindow(
            kind=i.kind.value,
            description=i.describe(),
            start_s=(i.injected_at or t0) - t0,
            end_s=None if i.recovered_at is None else min(i.recovered_at - t0, duration),
            served_by=i.served_by,
            moves_traffic=i.kind in FAILOVER_KINDS,
            took_effect_s=None
            if i.took_effect_at is None or i.injected_at is None
            else i.took_effect_at - i.injected_at,
        )
        for i in injections
        if i.injected_at is not None
    ]
    rel = [replace(s, t=s.t - t0) for s in samples]
    expect = scenario.expect
    measures = measure(
        rel,
        windows,
        duration,
        slow_request_s=expect.slow_request_s,
        node_regions=site.node_regions,
        allowed_regions=expect.allowed_regions,
    )
    return DrillReport(
        scenario=scenario.name,
        description=scenario.description,
        started_at=started_at,
        duration_s=duration,
        admin_url=site.admin_url,
        verdicts=tuple(judge(expect, measures)),
        measures=measures,
        buckets=tuple(buckets(rel, duration)),
    )


async def _play(
    scenario: Scenario,
    injections: list[Injection],
    on_tick: Callable[[Tick], None] | None,
    site: DrillSite,
) -> tuple[list[Sample], float, float]:
    traffic = scenario.traffic
    gen = TrafficGenerator(
        traffic.url,
        concurrency=traffic.concurrency,
        timeout_s=traffic.timeout_s,
        methods=traffic.methods,
        paths=traffic.paths,
        rate_per_s=traffic.rate,
        sticky_share=traffic.sticky_share,
        ssl_context=site.ssl_context,
    )
    events: list[tuple[float, int, Injection]] = []
    for injection in injections:
        events.append((injection.fault.at_s, 1, injection))
        if injection.fault.until_s is not None:
            events.append((injection.fault.until_s, 0, injection))
    events.sort(key=lambda e: (e[0], e[1]))
    await gen.start()
    t0 = time.monotonic()
    started_at = time.time()
    timeline = asyncio.create_task(_timeline(events, t0))
    try:
        while (elapsed := time.monotonic() - t0) < traffic.duration_s:
            if timeline.done() and timeline.exception() is not None:
                raise timeline.exception()  # type: ignore[misc]
            if on_tick is not None:
                on_tick(_tick(gen, elapsed, traffic.duration_s, injections))
            await asyncio.sleep(min(TICK_S, traffic.duration_s - elapsed))
    finally:
        await gen.stop()
        if not timeline.done():
            timeline.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timeline
    end = t0 + traffic.duration_s
    return [s for s in gen.samples if s.t < end], t0, started_at


async def _timeline(events: list[tuple[float, int, Injection]], t0: float) -> None:
    for at_s, starts, injection in events:
        await asyncio.sleep(max(0.0, t0 + at_s - time.monotonic()))
        now = time.monotonic()
        if starts:
            injection.injected_at = now
            await injection.inject()
        else:
            injection.recovered_at = now
            await injection.recover()


def _tick(
    gen: TrafficGenerator, elapsed: float, duration: float, injections: list[Injection]
) -> Tick:
    now = time.monotonic()
    samples = gen.samples
    recent = []
    for s in reversed(samples):
        if s.t < now - 1.0:
            break
        recent.append(s)
    return Tick(
        elapsed_s=elapsed,
        duration_s=duration,
        total=len(samples),
        failed=sum(1 for s in samples if s.failed),
        last_second=summarize(recent),
        faults_on=tuple(
            i.describe() for i in injections if i.injected_at is not None and i.recovered_at is None
        ),
    )
