"""`portway rollout`: see and steer a gateway's progressive rollouts through its admin API.

    portway rollout status [NAME] [--admin URL] [--json]
    portway rollout pause|resume|promote|abort NAME [--admin URL] [--json]

NAME is a rollout's `route/rule`, or a route's name when the route has one
rollout. The gateway answering may be any replica: commands are written to
the registry by compare-and-set, and the replica that drives the rollouts
follows them (`gateway.rollout.runner`). `resume` of a rolled-back rollout
runs it again from its first step; `abort` of a promoted one sends every
request back to the stable side.

Exit status: 0 done, 1 the gateway refused (unknown rollout, a command the
rollout's phase does not allow, rollout state unreachable) or could not be
reached, 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

HELP = "show, pause, resume, promote or abort a gateway's progressive rollouts"
DEFAULT_ADMIN = "http://127.0.0.1:9901"
TIMEOUT_S = 10.0
ACTIONS = ("pause", "resume", "promote", "abort")


class AdminError(Exception):
    """The admin API could not be reached or answered an error."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    status = sub.add_parser("status", help="show every rollout, or one")
    status.add_argument(
        "name", nargs="?", metavar="NAME", help="a rollout (route/rule) or a route (default: all)"
    )
    _common(status)
    for action in ACTIONS:
        p = sub.add_parser(action, help=f"{action} a rollout")
        p.add_argument(
            "name", metavar="NAME", help="the rollout: route/rule, or a route's only one"
        )
        _common(p)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admin",
        default=DEFAULT_ADMIN,
        metavar="URL",
        help=f"the gateway's admin API (default {DEFAULT_ADMIN})",
    )
    parser.add_argument("--json", action="store_true", help="print the admin API's JSON answer")


def run(args: argparse.Namespace) -> int:
    base = args.admin.rstrip("/")
    try:
        if args.action == "status":
            if args.name:
                answer = _call("GET", f"{base}/rollouts/{args.name}")
                rollouts = [answer]
            else:
                answer = _call("GET", f"{base}/rollouts")
                rollouts = answer["rollouts"]
        else:
            answer = _call("POST", f"{base}/rollouts/{args.name}/{args.action}")
            rollouts = [answer]
    except AdminError as exc:
        print(f"portway rollout {args.action}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    elif not rollouts:
        print("no rollouts in the gateway's config")
    else:
        print(render(rollouts))
    return 0


def _call(method: str, url: str) -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("error") or exc.reason
        except ValueError:
            message = exc.reason
        raise AdminError(f"{message} (HTTP {exc.code} from {url})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AdminError(f"cannot reach the admin API at {url}: {reason}") from None


def render(rollouts: list[dict[str, Any]]) -> str:
    """One line per rollout: name, phase, step, canary share, why."""
    rows = [("ROLLOUT", "PHASE", "STEP", "CANARY", "WEIGHT", "REASON")]
    for r in rollouts:
        steps = len(r["steps"])
        step = r["step"]
        shown = "-" if step < 0 else f"{min(step + 1, steps)}/{steps}"
        rows.append((r["name"], r["phase"], shown, r["canary"], f"{r['weight']:g}%", r["reason"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    )
