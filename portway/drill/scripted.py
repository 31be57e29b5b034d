"""A drill report for a scripted run: `portway demo` walks its own phases, judged its own way.

The demo is a drill whose timeline is code rather than a scenario file: it
injects its faults itself and judges each phase with its own expectation.
This turns what it saw into the same `DrillReport` (and so the same JSON and
HTML page) as `portway drill`: its faults as windows, its phase verdicts as
the expectations, the samples of every traffic generator it ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from portway.drill.report import DrillReport
from portway.drill.timeline import FaultWindow, buckets
from portway.drill.verdict import Verdict, measure
from portway.traffic import Sample


def scripted_report(
    *,
    name: str,
    description: str,
    admin_url: str,
    started_at: float,
    t0: float,
    end: float,
    samples: Sequence[Sample],
    windows: Sequence[FaultWindow],
    verdicts: Sequence[Verdict],
) -> DrillReport:
    """`t0`/`end` and the sample times are monotonic seconds; windows are already relative."""
    duration = max(end - t0, 0.001)
    rel = sorted((replace(s, t=s.t - t0) for s in samples if t0 <= s.t < end), key=lambda s: s.t)
    measures = measure(
        rel, windows, duration, slow_request_s=None, node_regions={}, allowed_regions=()
    )
    return DrillReport(
        scenario=name,
        description=description,
        started_at=started_at,
        duration_s=duration,
        admin_url=admin_url,
        verdicts=tuple(verdicts),
        measures=measures,
        buckets=tuple(buckets(rel, duration)),
    )
