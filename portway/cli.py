"""The `portway` command: one verb per module under `portway.commands`.

Each verb module defines `HELP` (one line), `add_arguments(parser)` and
`run(args) -> int`. Modules are imported only when their verb runs, so
`portway check` does not pay for the gateway's imports. Exit codes: 0 ok,
1 the check or job failed, 2 usage error (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

VERBS: dict[str, str] = {
    "demo": "portway.commands.demo",
    "drill": "portway.commands.drill",
    "check": "portway.commands.check",
    "routes": "portway.commands.routes",
    "rollout": "portway.commands.rollout",
    "gateway": "portway.commands.gateway",
    "registry": "portway.commands.registry",
    "doctor": "portway.commands.doctor",
    "controller": "portway.commands.controller",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portway",
        description="Route external traffic to Kubernetes NodePort services across clusters.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, module_name in VERBS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        p = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
