"""`portway routes`: show the compiled routing table, or explain one request.

`portway routes explain --config FILE --registry DIR "GET https://host/path?q"
--from IP [-H 'name: value'] [--cookie k=v] [--listener NAME] [--json]`
compiles the config against the records in DIR (one record per
`*.json`/`*.yaml` file, as the files registry stores them) and prints the
decision chain of `RoutingTable.explain`: routes considered and why, backend
and why, locality levels with health and shares, panic, endpoint.

`portway routes list --config FILE [--registry DIR] [--json]` prints the
compiled routes and backends. Exit status: 0 ok (also when the explained
request gets no route: that is an answer), 1 config or registry unusable,
2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from gateway.config.model import GatewayConfig, Listener
    from gateway.routing.decision import Decision
    from gateway.routing.table import RoutingTable
    from portway.model import ServiceRecord

HELP = "list compiled routes, or explain where a request would go and why"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    explain = sub.add_parser("explain", help="explain the routing decision for one request")
    _common(explain)
    explain.add_argument(
        "request", metavar="REQUEST", help='e.g. "GET https://shop.example.com/api?x=1"'
    )
    explain.add_argument("--from", dest="client_ip", default="198.51.100.1", metavar="IP")
    explain.add_argument(
        "-H", "--header", action="append", default=[], metavar="'NAME: VALUE'", help="repeatable"
    )
    explain.add_argument("--cookie", action="append", default=[], metavar="K=V", help="repeatable")
    explain.add_argument("--listener", default=None, help="listener name (default: by scheme/port)")
    explain.add_argument("--seed", type=int, default=None, help="seed the table's randomness")
    listing = sub.add_parser("list", help="print the compiled routes and backends")
    _common(listing)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="FILE", help="routing config (YAML/JSON)")
    p.add_argument("--registry", default=None, metavar="DIR", help="files registry directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    try:
        config = _load_config(args.config)
        records = _load_records(args.registry) if args.registry else []
    except Exception as exc:  # the loader's errors are already file:line:col messages
        print(f"portway routes: {exc}", file=sys.stderr)
        return 1
    from gateway.routing.compiler import CompileError, compile_table

    try:
        table = compile_table(config, records, seed=getattr(args, "seed", None))
    except CompileError as exc:
        print(f"portway routes: {exc}", file=sys.stderr)
        return 1
    if args.action == "list":
        return _list(table, args.json)
    return _explain(table, config, args)


def _load_config(path: str) -> GatewayConfig:
    from gateway.config.loader import load_config

    return load_config(path)


def _load_records(directory: str) -> list[ServiceRecord]:
    from portway.registry.record_files import read_records

    return read_records(directory)


def _explain(table: RoutingTable, config: GatewayConfig, args: argparse.Namespace) -> int:
    from gateway.routing.decision import RequestFacts
    from gateway.routing.endpoints import EndpointState

    method, _, url = args.request.strip().partition(" ")
    if not url:
        method, url = "GET", method
    parts = urlsplit(url if "://" in url else f"http://{url}")
    headers: dict[str, str] = {}
    for raw in args.header:
        name, sep, value = raw.partition(":")
        if not sep:
            print(f"portway routes: -H {raw!r}: write 'name: value'", file=sys.stderr)
            return 2
        headers[name.strip().lower()] = value.strip()
    if args.cookie:
        headers["cookie"] = "; ".join(c.strip() for c in args.cookie)
    host = (parts.hostname or "").lower()
    headers.setdefault("host", parts.netloc)
    listener = args.listener
    if listener is None:
        chosen = _listener_for(config.listeners, parts.scheme or "http", parts.port)
        listener = chosen.name if chosen else ""
    facts = RequestFacts(
        method=method.upper(),
        host=host,
        path=parts.path or "/",
        query=parts.query,
        headers=headers,
        client_ip=args.client_ip,
        listener=listener,
    )
    decision = table.explain(facts, EndpointState())
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2))
    else:
        for line in decision.steps or []:
            print(line)
        print(_summary(decision))
    return 0


def _listener_for(
    listeners: tuple[Listener, ...], scheme: str, port: int | None
) -> Listener | None:
    from gateway.config.model import ListenerProtocol

    wanted = ListenerProtocol.HTTPS if scheme == "https" else ListenerProtocol.HTTP
    candidates = [lst for lst in listeners if lst.protocol is wanted]
    if port is not None:
        exact = [lst for lst in candidates if lst.port == port]
        candidates = exact or candidates
    return candidates[0] if candidates else None


def _summary(d: Decision) -> str:
    if d.error == "redirect":
        return f"=> redirect {d.redirect_status} to {d.redirect_location}"
    if d.endpoint is None:
        return f"=> {d.error}"
    route = d.route.name if d.route else "?"
    backend = d.backend.name if d.backend else "?"
    extra = f" (Set-Cookie: {d.set_cookie})" if d.set_cookie else ""
    return f"=> route {route} → backend {backend} → {d.endpoint.key}{extra}"


def _list(table: RoutingTable, as_json: bool) -> int:
    if as_json:
        print(json.dumps(table.describe(), indent=2))
        return 0
    for route in table.routes:
        hosts = ", ".join(route.hostnames) or "*"
        listeners = ", ".join(route.listeners) or "all listeners"
        print(f"route {route.name}  hosts: {hosts}  on: {listeners}")
        for rule in route.rules:
            matches = rule.config.matches if rule.config else ()
            paths = ", ".join(f"{m.path.type.value} {m.path.value}" for m in matches) or "-"
            split = rule.split
            targets = ", ".join(
                f"{n}×{w}" for n, w in zip(split.names, split.weights, strict=True)
            )
            if split.canary_name and split.canary_config is not None:
                targets += f" (+ canary {split.canary_name} {split.canary_config.percent:g}%)"
            print(f"  rule {rule.name}: {paths} → {targets}")
    print()
    for name, backend in table.backends.items():
        print(f"backend {name}: {len(backend.endpoints)} endpoints, {backend.policy.value}")
        for level_name, level in zip(backend.level_names, backend.levels, strict=True):
            keys = ", ".join(e.key for e in level[:6]) + (" …" if len(level) > 6 else "")
            print(f"  {level_name}: {keys}")
    return 0
