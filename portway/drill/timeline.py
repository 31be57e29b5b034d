"""What users saw over time: client samples cut into buckets, and the drill's windows.

Pure code (samples in, values out), tested with plain values. Sample times
here are seconds from the start of traffic. A `FaultWindow` is when one fault
was on and which answers (`label/node` in `x-served-by`) its target gives;
the drill's windows are `before` (up to the first fault), `during` (first
fault on to last fault off, or the end) and `after` (the rest).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from portway.drill.scenario import Window
from portway.traffic import Sample, percentile


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """One fault as it happened: seconds from the start; `end_s` None if it never ended."""

    kind: str
    description: str
    start_s: float
    end_s: float | None
    served_by: frozenset[str]
    moves_traffic: bool
    took_effect_s: float | None = None
    """A certificate rotation: the first handshake with the new certificate; a registry
    outage: the gateway first saying its registry is down."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """`width_s` of traffic from `start_s`: answers per label, failures, latency."""

    start_s: float
    width_s: float
    requests: int
    served: dict[str, int]
    failed: int
    p50_ms: float
    p99_ms: float


def label_of(sample: Sample) -> str:
    """The answering service's label (`canary/alpha-1` → `canary`), '' if none answered."""
    return sample.served_by.rpartition("/")[0] or sample.served_by


def bucket_width(duration_s: float) -> float:
    """About 60-120 buckets over the drill, never finer than a quarter second."""
    for width in (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0):
        if duration_s / width <= 120:
            return width
    return 60.0


def buckets(samples: Sequence[Sample], duration_s: float) -> list[Bucket]:
    width = bucket_width(duration_s)
    count = max(1, int(-(-duration_s // width)))
    groups: list[list[Sample]] = [[] for _ in range(count)]
    for s in samples:
        index = int(s.t // width)
        if 0 <= index < count:
            groups[index].append(s)
    out = []
    for index, group in enumerate(groups):
        latencies = sorted(s.latency_s * 1000 for s in group)
        served = Counter(label_of(s) for s in group if not s.failed and s.served_by)
        out.append(
            Bucket(
                start_s=index * width,
                width_s=width,
                requests=len(group),
                served=dict(sorted(served.items())),
                failed=sum(1 for s in group if s.failed),
                p50_ms=percentile(latencies, 50),
                p99_ms=percentile(latencies, 99),
            )
        )
    return out


def window_bounds(
    windows: Sequence[FaultWindow], duration_s: float
) -> dict[Window, tuple[float, float]]:
    """[start, end) of before/during/after; `after` is empty while a fault never ended."""
    if not windows:
        return {
            Window.BEFORE: (0.0, duration_s),
            Window.DURING: (duration_s, duration_s),
            Window.AFTER: (duration_s, duration_s),
        }
    first = min(w.start_s for w in windows)
    ends = [w.end_s for w in windows]
    last = duration_s if None in ends else max(e for e in ends if e is not None)
    return {
        Window.BEFORE: (0.0, first),
        Window.DURING: (first, last),
        Window.AFTER: (last, duration_s),
    }


def between(samples: Sequence[Sample], start_s: float, end_s: float) -> list[Sample]:
    return [s for s in samples if start_s <= s.t < end_s]
