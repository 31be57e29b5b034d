"""Line charts as plain inline SVG: no script, no CDN, readable in any browser.

`line_chart` draws named series of (x, y) points over a shared x axis
(seconds of the drill), with shaded fault windows behind them; the y axis
starts at 0 and ends at a round number above the largest value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

WIDTH = 880
HEIGHT = 230
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 34
PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
FAIL_COLOR = "#d62728"

Marker = tuple[float, float, str]  # start, end, text


def nice_ceiling(value: float) -> float:
    """1, 2 or 5 times a power of ten, at or above `value` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def color_for(index: int, name: str) -> str:
    return FAIL_COLOR if name == "failed" else PALETTE[index % len(PALETTE)]


def line_chart(
    title: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    x_max: float,
    y_unit: str,
    markers: Sequence[Marker] = (),
) -> str:
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    y_max = nice_ceiling(max((y for pts in series.values() for _, y in pts), default=0.0))
    x_max = x_max or 1.0

    def px(x: float) -> float:
        return LEFT + plot_w * min(max(x / x_max, 0.0), 1.0)

    def py(y: float) -> float:
        return TOP + plot_h * (1 - min(y / y_max, 1.0))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f'<text x="{LEFT}" y="16" class="title">{escape(title)}</text>',
    ]
    for row, (start, end, text) in enumerate(markers):
        x0, x1 = px(start), px(end)
        out.append(
            f'<rect x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 1.5):.1f}" height="{plot_h}" '
            'class="fault"><title>' + escape(text) + "</title></rect>"
        )
        label_y = TOP + 12 + 12 * (row % 4)  # stacked: faults often start together
        out.append(
            f'<text x="{x0 + 3:.1f}" y="{label_y}" class="fault-label">{escape(text)}</text>'
        )
    for i in range(5):
        y = y_max * i / 4
        y_px = py(y)
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y_px:.1f}" y2="{y_px:.1f}" class="grid"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" class="tick" text-anchor="end">{y:g}</text>'
        )
    step = nice_ceiling(x_max / 10)
    x = 0.0
    while x <= x_max + 1e-9:
        out.append(
            f'<text x="{px(x):.1f}" y="{HEIGHT - BOTTOM + 16}" class="tick" '
            f'text-anchor="middle">{x:g}s</text>'
        )
        x += step
    out.append(
        f'<text x="12" y="{TOP + plot_h / 2:.0f}" class="tick" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2:.0f})" text-anchor="middle">'
        f"{escape(y_unit)}</text>"
    )
    legend_x = LEFT + 340
    for index, (name, points) in enumerate(series.items()):
        color = color_for(index, name)
        if points:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8">'
                f"<title>{escape(name)}</title></polyline>"
            )
        out.append(
            f'<rect x="{legend_x}" y="8" width="10" height="10" fill="{color}"/>'
            f'<text x="{legend_x + 14}" y="17" class="legend">{escape(name)}</text>'
        )
        legend_x += 24 + 7 * len(name)
    out.append("</svg>")
    return "\n".join(out)
