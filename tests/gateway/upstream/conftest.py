"""The resilience drills' table, reported once at the end of the session.

Each drill test (`test_resilience_drills.py`) asserts its own targets and
attaches its measured row to its report as the user property `drill_row`;
this plugin collects those rows as the reports come in and writes them as
one Markdown table in pytest's terminal summary (shown by `-q` too, without
`-s`), passed and failed drills alike, each with its outcome. Nothing is
printed when no drill ran.
"""

from __future__ import annotations

from typing import Any

import pytest

DRILL_ROW = "drill_row"
COLUMNS = (
    ("scenario", "scenario"),
    ("outcome", "outcome"),
    ("rate", "rate (req/s)"),
    ("failed", "failed"),
    ("out_of_rotation_s", "moved within (s)"),
    ("last_request_at_faulty_s", "last request at faulty (s)"),
    ("p99_steady_ms", "p99 steady (ms)"),
    ("p99_first_2s_ms", "p99 first 2 s (ms)"),
    ("p99_after_1s_ms", "p99 1 s after (ms)"),
    ("latency_bound_ms", "bound (ms)"),
    ("back_s", "back after recovery (s)"),
    ("full_share_s", "full share (s)"),
    ("first_half_s_share", "share in first 0.5 s back"),
    ("cpu_wait_ms_per_s", "CPU wait ms/s (steady, 1 s after)"),
)

_ROWS: list[dict[str, Any]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name == DRILL_ROW:
            _ROWS.append({**value, "outcome": report.outcome})


def drill_table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as Markdown lines (a column a row lacks is left empty)."""
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        cells = ("" if row.get(key) is None else str(row[key]) for key, _ in COLUMNS)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ROWS:
        return
    terminalreporter.section("resilience drills")
    for line in drill_table(_ROWS):
        terminalreporter.write_line(line)
