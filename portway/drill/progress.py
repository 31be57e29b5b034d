"""The live terminal view of a running drill (rich): progress, traffic now, faults on."""

from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from portway.drill.run import Tick


class LiveView:
    """A `rich.live.Live` panel redrawn on every tick; use as a context manager."""

    def __init__(self, console: Console, scenario: str) -> None:
        self.scenario = scenario
        self.live = Live(Text(f"drill {scenario}: starting"), console=console, refresh_per_second=8)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def update(self, tick: Tick) -> None:
        self.live.update(render(self.scenario, tick))


def render(scenario: str, tick: Tick) -> Group:
    now = tick.last_second
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "requests", f"{tick.total} sent, {tick.failed} failed, {now.requests} in the last second"
    )
    share = ", ".join(f"{k} {v:.0%}" for k, v in now.share.items()) or "-"
    table.add_row("answered by", share)
    table.add_row("latency", f"p50 {now.p50_ms:.1f} ms, p99 {now.p99_ms:.1f} ms (last second)")
    faults = ", ".join(tick.faults_on) or "none"
    table.add_row("faults on", Text(faults, style="red" if tick.faults_on else ""))
    header = Text.assemble(
        ("drill ", "bold"),
        (scenario, "bold cyan"),
        f"  {tick.elapsed_s:5.1f} / {tick.duration_s:g} s",
    )
    bar = ProgressBar(total=tick.duration_s, completed=tick.elapsed_s, width=60)
    return Group(header, bar, table)
