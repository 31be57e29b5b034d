"""`portway demo`: run the embedded multi-cluster failover demo on loopback."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from portway.demo import DemoReport

HELP = "run a failover demo: simulated clusters on loopback, files registry, a real gateway"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--phase-seconds",
        type=float,
        default=2.0,
        metavar="S",
        help="how long traffic runs in each phase (default 2)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--html",
        type=Path,
        default=Path(tempfile.gettempdir()) / "portway-demo-report.html",
        metavar="PATH",
        help="where to write the drill report page (default: %(default)s)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the clusters and the gateway running after the report, until Ctrl-C",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from portway.demo import run_demo
    from portway.demo_site import DemoError

    console = Console(stderr=args.json)

    def on_report(report: DemoReport) -> None:
        if args.json:
            json.dump(report.to_dict(), sys.stdout, indent=2)
            print(flush=True)
        else:
            print_report(console, report)
        if args.keep:
            from portway.demo_site import ADMIN_URL, GATEWAY_URL

            console.print(
                f"left running: gateway {GATEWAY_URL}, dashboard {ADMIN_URL}/dashboard, "
                f"admin API {ADMIN_URL}; Ctrl-C stops it",
                highlight=False,
            )

    try:
        with console.status(
            "running the demo: simulated clusters alpha and beta, gateway on :18080"
        ):
            report = asyncio.run(
                run_demo(
                    phase_s=args.phase_seconds,
                    log=lambda m: console.log(m, highlight=False),
                    html_path=args.html,
                    keep=args.keep,
                    on_report=on_report,
                )
            )
    except DemoError as exc:
        print(f"portway demo: {exc}", file=sys.stderr)
        return 1
    return 0 if report.ok else 1


def print_report(console: Console, report: DemoReport) -> None:
    from rich.table import Table

    from portway.demo_site import ADMIN_URL

    console.print("\n[bold]How the gateway routes GET http://127.0.0.1:18080/[/bold]")
    for step in report.explain:
        console.print(f"  {step}", highlight=False)
    table = Table(title="What users saw", show_lines=True)
    for col in ("phase", "what happened", "requests", "failed", "where traffic went", "p50/p99 ms"):
        table.add_column(col)
    table.add_column("expected", max_width=40)
    for p in report.phases:
        share = ", ".join(f"{k} {v:.0%}" for k, v in p.summary.share.items())
        mark = "[green]✔[/green]" if p.met else "[red]✘[/red]"
        table.add_row(
            p.name,
            p.action,
            str(p.summary.requests),
            str(p.summary.failed),
            share,
            f"{p.summary.p50_ms:.1f} / {p.summary.p99_ms:.1f}",
            f"{mark} {p.expectation}",
        )
    console.print(table)
    fo = f"{report.failover_s:.2f} s" if report.failover_s is not None else "not seen"
    rec = f"{report.recovery_s:.2f} s" if report.recovery_s is not None else "not seen"
    console.print(f"failover (cluster lost → gone from the routing table): {fo}")
    console.print(f"recovery (cluster back → first request served by it): {rec}")
    console.print(
        "[green]demo ok[/green]" if report.ok else "[red]demo: expectations not met[/red]"
    )
    if report.html_report:
        console.print(f"drill report (HTML): {report.html_report}", highlight=False)
    console.print(
        f"dashboard: {ADMIN_URL}/dashboard (while the gateway runs: portway demo --keep); "
        f"admin API: {ADMIN_URL} (/endpoints, /explain, /metrics)",
        highlight=False,
    )
