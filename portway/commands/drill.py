"""`portway drill SCENARIO.yaml`: a failover drill against a live gateway, judged and reported."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from portway.drill.report import DrillReport

HELP = "run a failover drill: traffic, a timeline of faults, expectations; JSON/HTML report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", metavar="SCENARIO.yaml", help="the drill scenario")
    parser.add_argument(
        "--gateway-admin",
        metavar="URL",
        help="drill a gateway already running (its admin API) instead of starting one; "
        "it must read the files registry the drill's clusters publish to",
    )
    parser.add_argument(
        "--registry",
        metavar="DIR",
        type=Path,
        help="with --gateway-admin: the files registry directory that gateway reads "
        "(default: its config's registry.path when absolute)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="squeeze or stretch the scenario's timeline to S seconds of traffic",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--html", metavar="PATH", type=Path, help="write the HTML report here")
    parser.add_argument("--check", action="store_true", help="only validate the scenario")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from portway.drill.loader import ScenarioError, load_scenario
    from portway.drill.progress import LiveView
    from portway.drill.report import render_html
    from portway.drill.run import run_drill
    from portway.drill.site import SiteError

    console = Console(stderr=True)
    try:
        loaded = load_scenario(args.scenario)
    except ScenarioError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    if args.check:
        console.print(f"{args.scenario}: ok", highlight=False)
        return 0
    if args.duration is not None and args.duration <= 0:
        console.print("--duration must be positive")
        return 2
    name = loaded.scenario.name
    try:
        with LiveView(console, name) as view:
            report = asyncio.run(
                run_drill(
                    loaded,
                    admin_url=args.gateway_admin,
                    registry_dir=args.registry,
                    duration_s=args.duration,
                    on_tick=view.update,
                    log=lambda m: console.log(m, highlight=False),
                )
            )
    except SiteError as exc:
        console.print(f"[red]drill {name}: {exc}[/red]", highlight=False)
        return 1
    if args.html is not None:
        args.html.write_text(render_html(report), encoding="utf-8")
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print_summary(console, report)
    if args.html is not None:
        console.print(f"HTML report: {args.html.resolve()}", highlight=False)
    return 0 if report.ok else 1


def print_summary(console: Console, report: DrillReport) -> None:
    from rich.table import Table

    table = Table(title=f"drill {report.scenario}")
    for col in ("expectation", "limit", "measured", ""):
        table.add_column(col)
    for v in report.verdicts:
        table.add_row(v.name, v.limit, v.measured, "[green]✔[/green]" if v.met else "[red]✘[/red]")
    console.print(table)
    total = report.measures.total
    if total is not None:
        share = ", ".join(f"{k} {v:.0%}" for k, v in total.share.items())
        console.print(
            f"{total.requests} requests, {total.failed} failed; {share}; "
            f"p50 {total.p50_ms:.1f} ms, p99 {total.p99_ms:.1f} ms",
            highlight=False,
        )
    verdict = "[green]drill ok[/green]" if report.ok else "[red]drill: expectations not met[/red]"
    console.print(verdict)
