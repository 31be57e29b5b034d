"""Judge a drill: the scenario's expectations against what the clients saw.

Pure: samples (seconds from the start of traffic), fault windows and the
expectations in, one `Verdict` per expectation out, plus the figures behind
them (`Measures`). Definitions, as the scenario reference states them:

- failover of a fault that takes endpoints away: from its start to the last
  request in the fault that failed, was answered by the faulted target, or
  took longer than the slow threshold. When such requests still come in the
  last quarter of the fault, traffic never settled: no failover time.
- failback: from the fault's end to the first request its target answers.
- slow threshold: `slowRequest`, else 5 x the p99 before the first fault
  (at least 50 ms).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from portway.drill.scenario import Expectations, Window
from portway.drill.timeline import FaultWindow, between, window_bounds
from portway.traffic import Sample, Summary, percentile, summarize

MIN_SLOW_S = 0.05


@dataclass(frozen=True, slots=True)
class Verdict:
    """One expectation: what was allowed, what was measured, whether it held."""

    name: str
    limit: str
    measured: str
    met: bool


@dataclass(frozen=True, slots=True)
class FaultMeasure:
    window: FaultWindow
    failover_s: float | None
    failback_s: float | None


@dataclass(slots=True)
class Measures:
    """The figures of a drill: per window, per fault, and the thresholds used."""

    windows: dict[Window, Summary] = field(default_factory=dict)
    bounds: dict[Window, tuple[float, float]] = field(default_factory=dict)
    faults: list[FaultMeasure] = field(default_factory=list)
    slow_s: float = MIN_SLOW_S
    outside_regions: int = 0
    total: Summary | None = None
    samples: Sequence[Sample] = ()

    def share_between(self, start_s: float, end_s: float) -> Mapping[str, float]:
        return summarize(between(self.samples, start_s, end_s)).share


def slow_threshold(before: Sequence[Sample], given_s: float | None) -> float:
    if given_s is not None:
        return given_s
    p99 = percentile(sorted(s.latency_s for s in before), 99)
    return max(MIN_SLOW_S, 5 * p99)


def failover_s(
    samples: Sequence[Sample], window: FaultWindow, end_s: float, slow_s: float
) -> float | None:
    inside = between(samples, window.start_s, end_s)
    bad = [
        s.t for s in inside if s.failed or s.served_by in window.served_by or s.latency_s > slow_s
    ]
    if not bad:
        return 0.0
    settle_from = end_s - (end_s - window.start_s) / 4
    if bad[-1] >= settle_from:
        return None
    return max(bad) - window.start_s


def failback_s(samples: Sequence[Sample], window: FaultWindow) -> float | None:
    if window.end_s is None:
        return None
    for s in samples:
        if s.t >= window.end_s and s.served_by in window.served_by and not s.failed:
            return s.t - window.end_s
    return None


def measure(
    samples: Sequence[Sample],
    windows: Sequence[FaultWindow],
    duration_s: float,
    *,
    slow_request_s: float | None,
    node_regions: Mapping[str, str],
    allowed_regions: Sequence[str],
) -> Measures:
    m = Measures(bounds=window_bounds(windows, duration_s), samples=samples)
    for name, (start, end) in m.bounds.items():
        m.windows[name] = summarize(between(samples, start, end))
    m.total = summarize(samples)
    m.slow_s = slow_threshold(between(samples, *m.bounds[Window.BEFORE]), slow_request_s)
    for w in windows:
        end = duration_s if w.end_s is None else w.end_s
        fo = failover_s(samples, w, end, m.slow_s) if w.moves_traffic else None
        fb = failback_s(samples, w) if w.moves_traffic else None
        m.faults.append(FaultMeasure(w, fo, fb))
    if allowed_regions:
        allowed = set(allowed_regions)
        m.outside_regions = sum(
            1
            for s in samples
            if s.served_by and node_regions.get(s.served_by.partition("/")[2]) not in allowed
        )
    return m


def _ms(value: float) -> str:
    return f"{value:.1f} ms"


def judge(expect: Expectations, m: Measures) -> list[Verdict]:
    out: list[Verdict] = []
    assert m.total is not None
    if expect.max_failed_requests is not None:
        out.append(
            Verdict(
                "failed requests",
                f"<= {expect.max_failed_requests}",
                f"{m.total.failed} of {m.total.requests}",
                m.total.failed <= expect.max_failed_requests,
            )
        )
    movers = [f for f in m.faults if f.window.moves_traffic]
    if expect.max_failover_s is not None:
        for f in movers:
            fo = f.failover_s
            out.append(
                Verdict(
                    f"failover: {f.window.description}",
                    f"<= {expect.max_failover_s:g} s",
                    "never settled" if fo is None else f"{fo:.2f} s",
                    fo is not None and fo <= expect.max_failover_s,
                )
            )
    if expect.max_failback_s is not None:
        for f in movers:
            if f.window.end_s is None:
                continue
            fb = f.failback_s
            out.append(
                Verdict(
                    f"failback: {f.window.description}",
                    f"<= {expect.max_failback_s:g} s",
                    "not seen" if fb is None else f"{fb:.2f} s",
                    fb is not None and fb <= expect.max_failback_s,
                )
            )
    if expect.max_rotation_s is not None:
        for f in m.faults:
            if f.window.kind != "rotate-certificate":
                continue
            took = f.window.took_effect_s
            out.append(
                Verdict(
                    f"certificate served: {f.window.description}",
                    f"<= {expect.max_rotation_s:g} s",
                    "not seen" if took is None else f"{took:.2f} s",
                    took is not None and took <= expect.max_rotation_s,
                )
            )
    for limit, window in (
        (expect.max_p99_in_fault_ms, Window.DURING),
        (expect.max_p99_after_fault_ms, Window.AFTER),
    ):
        if limit is not None:
            p99 = m.windows[window].p99_ms
            out.append(
                Verdict(f"p99 {window.value} the fault", f"<= {_ms(limit)}", _ms(p99), p99 <= limit)
            )
    if expect.allowed_regions:
        out.append(
            Verdict(
                "traffic within allowedRegions",
                ", ".join(expect.allowed_regions),
                f"{m.outside_regions} request(s) outside",
                m.outside_regions == 0,
            )
        )
    for bound in expect.shares:
        if bound.window is not None:
            share = m.windows[bound.window].share.get(bound.label, 0.0)
            when = bound.window.value
        else:
            share = m.share_between(bound.from_s or 0.0, bound.to_s or 0.0).get(bound.label, 0.0)
            when = f"{bound.from_s:g}-{bound.to_s:g} s"
        out.append(
            Verdict(
                f"share of {bound.label} {when}",
                f"{bound.min:.0%} to {bound.max:.0%}",
                f"{share:.1%}",
                bound.min <= share <= bound.max,
            )
        )
    return out
