"""`portway doctor NAMESPACE/SERVICE`: why is (or isn't) this Service reachable through portway?

Walks the NodePort troubleshooting guide for one Service: is it exported,
has it ready endpoints, which nodes serve it (derive()'s verdicts), does
node:nodePort connect, does kube-proxy's healthCheckNodePort answer (Local),
do NetworkPolicies drop outside traffic, do the node names resolve, is the
registry record there and current, does a gateway route to the same
endpoints. Prints a table (or `--json`). Exit status: 0 every step ok or
warned, 1 a step failed, 2 usage error (bad arguments, unreadable kubeconfig).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
from typing import Any

HELP = "diagnose one Service: endpoints, eligible nodes, NodePorts, policies, registry, gateway"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", metavar="NAMESPACE/SERVICE", help="the Service to diagnose")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument(
        "--cluster",
        help="cluster name the controller publishes as (default: the only registry record's)",
    )
    parser.add_argument(
        "--region",
        default="",
        help="region, as given to the controller (default: nodes' region label)",
    )
    parser.add_argument(
        "--address-preference",
        default="ExternalIP,InternalIP",
        help="node address types in order of preference, as given to the controller "
        "(default ExternalIP,InternalIP)",
    )
    parser.add_argument(
        "--node-port-range",
        default="30000-32767",
        help="the apiserver's NodePort range (default 30000-32767)",
    )
    parser.add_argument(
        "--tier-range",
        action="append",
        default=[],
        metavar="TIER=FIRST-LAST",
        help="a per-tier nodePort range, repeatable",
    )
    parser.add_argument(
        "--registry", choices=["files", "etcd", "consul"], help="registry to find the record in"
    )
    parser.add_argument("--dir", help="files registry directory")
    parser.add_argument("--etcd", action="append", default=[], metavar="URL", help="etcd URL")
    parser.add_argument("--consul", metavar="ADDR", help="Consul agent address")
    parser.add_argument(
        "--root", default="", help="key root before portway/v1/services/ (default none)"
    )
    parser.add_argument("--gateway-admin", help="a gateway's admin API URL, e.g. http://h:9901")
    parser.add_argument(
        "--timeout", type=float, default=3.0, help="per-probe timeout, seconds (default 3)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from portway.commands.controller import api_client_from_args

    try:
        target = _target(args)
    except ValueError as exc:
        print(f"portway doctor: {exc}", file=sys.stderr)
        return 2
    try:
        api_client = api_client_from_args(args)
    except Exception as exc:  # the client raises ConfigException, OSError, yaml errors...
        print(f"portway doctor: cannot load the kubeconfig: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_diagnose(target, api_client))
    finally:
        api_client.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print(report)
    return report.exit_code


async def _diagnose(target: Any, api_client: Any) -> Any:
    from controller.doctor import judge
    from controller.probes import gather

    return judge(await gather(target, api_client))


def _target(args: argparse.Namespace) -> Any:
    """Flags -> DoctorTarget; cluster settings are read exactly as `portway controller` reads
    them, so the same flags give the same derivation."""
    from controller.probes import DoctorTarget, RegistryTarget
    from portway.commands.controller import registry_from_args, settings_from_args

    namespace, sep, name = args.service.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ValueError(f"{args.service!r} is not NAMESPACE/SERVICE")
    if args.timeout <= 0:
        raise ValueError("--timeout must be positive")
    settings = settings_from_args(
        argparse.Namespace(**{**vars(args), "cluster": args.cluster or "unnamed"})
    )
    registry = None
    if args.registry:
        if args.registry == "files" and not args.dir:
            raise ValueError("--registry files needs --dir")
        registry = RegistryTarget(args.registry, functools.partial(registry_from_args, args))
    return DoctorTarget(
        namespace,
        name,
        settings,
        registry=registry,
        gateway_admin=args.gateway_admin,
        timeout_s=args.timeout,
        cluster_given=bool(args.cluster),
    )


_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def _print(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    table = Table(title=f"portway doctor {report.target} (cluster {report.cluster})")
    table.add_column("step")
    table.add_column("verdict")
    table.add_column("why")
    for step in report.steps:
        why = step.summary + "".join(f"\n  {d}" for d in step.details)
        verdict = step.status.value
        table.add_row(step.name, Text(verdict, style=_STYLE[verdict]), Text(why))
    console.print(table)
    failed = [s.name for s in report.steps if s.status.value == "fail"]
    console.print(f"failed: {', '.join(failed)}" if failed else "no step failed")
