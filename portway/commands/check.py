"""`portway check FILE...`: validate routing configs the way the gateway will.

Prints one line per issue, `file:line:col: path: message`, then a summary.
Exit status: 0 when no file has errors (warnings allowed), 1 when any does,
2 on usage errors. `--json` prints the same findings for machines;
`--schema` prints the config's JSON Schema (for editors and CI) instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = "validate routing config files (file:line:col errors), or print the JSON Schema"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help="config files (YAML or JSON)")
    parser.add_argument("--json", action="store_true", help="print issues as JSON")
    parser.add_argument(
        "--schema", action="store_true", help="print the config JSON Schema and exit"
    )


def run(args: argparse.Namespace) -> int:
    from gateway.config.loader import ConfigReport, check_config_file

    if args.schema:
        from gateway.config.schema import render_schema

        sys.stdout.write(render_schema())
        return 0
    if not args.files:
        print("portway check: error: give at least one FILE (or --schema)", file=sys.stderr)
        return 2
    reports: list[ConfigReport] = [check_config_file(name) for name in args.files]
    errors = sum(len(report.errors) for report in reports)
    warnings = sum(len(report.warnings) for report in reports)
    if args.json:
        print(json.dumps(_as_json(reports, errors, warnings), indent=2))
    else:
        for report in reports:
            for issue in report.issues:
                print(issue)
        print(_summary(reports, errors, warnings))
    return 1 if errors else 0


def _summary(reports: list[Any], errors: int, warnings: int) -> str:
    files = f"{len(reports)} file{'s' if len(reports) != 1 else ''}"
    verdict = "FAILED" if errors else "ok"
    return (
        f"checked {files}: {errors} error{'s' if errors != 1 else ''}, "
        f"{warnings} warning{'s' if warnings != 1 else ''}: {verdict}"
    )


def _as_json(reports: list[Any], errors: int, warnings: int) -> dict[str, Any]:
    return {
        "ok": errors == 0,
        "errors": errors,
        "warnings": warnings,
        "files": [
            {
                "file": report.filename,
                "digest": report.digest,
                "ok": report.ok,
                "issues": [issue.as_json() for issue in report.issues],
            }
            for report in reports
        ],
    }
