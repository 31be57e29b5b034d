"""`portway demo`: run the embedded multi-cluster failover demo on loopback."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

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


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from portway.demo import DemoError, run_demo

    console = Console(stderr=args.json)
    try:
        with console.status(
            "running the demo: simulated clusters alpha and beta, gateway on :18080"
        ):
            report = asyncio.run(
                run_demo(phase_s=args.phase_seconds, log=lambda m: console.log(m, highlight=False))
            )
    except DemoError as exc:
        print(f"portway demo: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        print()
        return 0 if report.ok else 1
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
    return 0 if report.ok else 1
