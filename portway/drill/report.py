"""The drill report: one value, rendered as JSON for machines and as an HTML page.

The HTML page is self-contained (inline CSS and SVG, no script, nothing
fetched), so it can be archived as a CI artefact and opened anywhere: the
verdicts, then requests per second per answering service with failures,
p50/p99 latency over time, each fault shaded over the time it was on.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from html import escape
from typing import Any

from portway.drill.plot import Marker, line_chart
from portway.drill.scenario import Window
from portway.drill.timeline import Bucket
from portway.drill.verdict import Measures, Verdict
from portway.traffic import Summary


@dataclass(frozen=True, slots=True)
class DrillReport:
    """Everything a drill found; `ok` when every expectation held."""

    scenario: str
    description: str
    started_at: float
    duration_s: float
    admin_url: str
    verdicts: tuple[Verdict, ...]
    measures: Measures
    buckets: tuple[Bucket, ...]

    @property
    def ok(self) -> bool:
        return all(v.met for v in self.verdicts)

    @property
    def labels(self) -> list[str]:
        return sorted({label for b in self.buckets for label in b.served})

    def to_dict(self) -> dict[str, Any]:
        m = self.measures
        return {
            "scenario": self.scenario,
            "ok": self.ok,
            "started_at": _iso(self.started_at),
            "duration_s": round(self.duration_s, 3),
            "admin_url": self.admin_url,
            "expectations": [
                {"name": v.name, "limit": v.limit, "measured": v.measured, "met": v.met}
                for v in self.verdicts
            ],
            "totals": _summary(m.total) if m.total else None,
            "windows": {
                w.value: {
                    "start_s": round(m.bounds[w][0], 3),
                    "end_s": round(m.bounds[w][1], 3),
                    **_summary(m.windows[w]),
                }
                for w in Window
            },
            "slow_request_ms": round(m.slow_s * 1000, 1),
            "requests_outside_allowed_regions": m.outside_regions,
            "faults": [
                {
                    "kind": f.window.kind,
                    "what": f.window.description,
                    "start_s": round(f.window.start_s, 3),
                    "end_s": None if f.window.end_s is None else round(f.window.end_s, 3),
                    "failover_s": _round(f.failover_s),
                    "failback_s": _round(f.failback_s),
                    "took_effect_s": _round(f.window.took_effect_s),
                }
                for f in m.faults
            ],
            "timeline": [
                {
                    "t_s": b.start_s,
                    "rps": round(b.requests / b.width_s, 1),
                    "served_rps": {k: round(v / b.width_s, 1) for k, v in b.served.items()},
                    "failed": b.failed,
                    "p50_ms": round(b.p50_ms, 2),
                    "p99_ms": round(b.p99_ms, 2),
                }
                for b in self.buckets
            ],
        }


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _summary(s: Summary) -> dict[str, Any]:
    return {
        "requests": s.requests,
        "failed": s.failed,
        "share": {k: round(v, 4) for k, v in s.share.items()},
        "p50_ms": round(s.p50_ms, 2),
        "p99_ms": round(s.p99_ms, 2),
        "errors": dict(s.errors),
    }


_PROBED = frozenset({"rotate-certificate", "registry-outage"})
"""Fault kinds whose taking effect the drill observes (a "took effect" column)."""

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 920px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 12px 0 20px; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e3e3; }
.met { color: #1a7f37; font-weight: 600; } .failed { color: #cf222e; font-weight: 600; }
svg { display: block; margin: 8px 0 18px; background: #fcfcfc; border: 1px solid #eee; }
svg .title { font-weight: 600; font-size: 13px; } svg .tick, svg .legend { font-size: 11px; }
svg .grid { stroke: #e6e6e6; } svg .fault { fill: #d62728; opacity: 0.10; }
svg .fault-label { font-size: 10px; fill: #a11; }
"""


def render_html(report: DrillReport) -> str:
    m = report.measures
    markers: list[Marker] = [
        (
            f.window.start_s,
            report.duration_s if f.window.end_s is None else f.window.end_s,
            f.window.description,
        )
        for f in m.faults
    ]
    mid = [b.start_s + b.width_s / 2 for b in report.buckets]
    served = {
        label: [
            (x, b.served.get(label, 0) / b.width_s)
            for x, b in zip(mid, report.buckets, strict=True)
        ]
        for label in report.labels
    }
    served["failed"] = [(x, b.failed / b.width_s) for x, b in zip(mid, report.buckets, strict=True)]
    latency = {
        "p50": [(x, b.p50_ms) for x, b in zip(mid, report.buckets, strict=True) if b.requests],
        "p99": [(x, b.p99_ms) for x, b in zip(mid, report.buckets, strict=True) if b.requests],
    }
    verdict = (
        '<span class="met">passed</span>' if report.ok else '<span class="failed">failed</span>'
    )
    rows = "\n".join(
        f"<tr><td>{escape(v.name)}</td><td>{escape(v.limit)}</td><td>{escape(v.measured)}</td>"
        f'<td class="{"met" if v.met else "failed"}">{"✔" if v.met else "✘"}</td></tr>'
        for v in report.verdicts
    )
    windows = "\n".join(
        f"<tr><td>{w.value}</td><td>{m.bounds[w][0]:.1f}-{m.bounds[w][1]:.1f} s</td>"
        f"<td>{m.windows[w].requests}</td><td>{m.windows[w].failed}</td>"
        f"<td>{escape(_shares(m.windows[w]))}</td>"
        f"<td>{m.windows[w].p50_ms:.1f} / {m.windows[w].p99_ms:.1f}</td></tr>"
        for w in Window
    )
    faults = "\n".join(
        f"<tr><td>{escape(f.window.description)}</td><td>{f.window.start_s:.1f} s</td>"
        f"<td>{'-' if f.window.end_s is None else f'{f.window.end_s:.1f} s'}</td>"
        f"<td>{_secs(f.failover_s, f.window.moves_traffic)}</td>"
        f"<td>{_secs(f.failback_s, f.window.moves_traffic)}</td>"
        f"<td>{_secs(f.window.took_effect_s, f.window.kind in _PROBED)}</td></tr>"
        for f in m.faults
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>portway drill: {escape(report.scenario)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>Drill {escape(report.scenario)}: {verdict}</h1>
<p class="sub">{escape(report.description)}<br>
started {_iso(report.started_at)}, {report.duration_s:.1f} s of traffic, gateway admin
{escape(report.admin_url)}</p>
<h2>Expectations</h2>
<table><tr><th>expectation</th><th>limit</th><th>measured</th><th></th></tr>
{rows}</table>
{
        line_chart(
            "Requests per second, by answering service",
            served,
            x_max=report.duration_s,
            y_unit="req/s",
            markers=markers,
        )
    }
{line_chart("Latency per bucket", latency, x_max=report.duration_s, y_unit="ms", markers=markers)}
<h2>Windows</h2>
<table><tr><th>window</th><th>time</th><th>requests</th><th>failed</th><th>share</th>
<th>p50 / p99 ms</th></tr>
{windows}</table>
<h2>Faults</h2>
<table><tr><th>fault</th><th>on</th><th>off</th><th>failover</th><th>failback</th>
<th>took effect</th></tr>
{faults}</table>
<p class="sub">failover: from a fault's start to the last request that failed, reached the
faulted target or took over {m.slow_s * 1000:.0f} ms; failback: from its end to the first
request its target served.</p>
</body></html>
"""


def _shares(s: Summary) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in s.share.items()) or "-"


def _secs(value: float | None, applies: bool) -> str:
    if not applies:
        return "-"
    return "not seen" if value is None else f"{value:.2f} s"
