"""`portway routes`: show the compiled routing table, or explain one request.

`portway routes explain --config FILE "GET https://host/path?q" [--from IP]
[-H 'name: value'] [--cookie k=v] [--listener NAME] [--registry DIR] [--json]`
compiles the config against the records of the registry the config names
(`registry:` files, etcd or consul, read once) and prints the decision chain
of `gateway.routing.explain`: routes considered and why, backend and why,
locality levels with health and shares, panic, endpoint. `--registry DIR`
reads a files directory instead. Where the records came from, how many, and
every record that could not be used are said on stderr; a registry that
cannot be read is an error saying why, never an empty table.

`portway routes list --config FILE [--registry DIR] [--json]` prints the
compiled routes and backends. Exit status: 0 ok (also when the explained
request gets no route: that is an answer), 1 config or registry unusable,
2 usage errors (a request that is not `METHOD URL`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from gateway.config.model import GatewayConfig, Listener
    from gateway.routing.decision import Decision
    from gateway.routing.table import RoutingTable
    from portway.model import ServiceRecord

HELP = "list compiled routes, or explain where a request would go and why"
DEFAULT_CLIENT = "198.51.100.1"
REGISTRY_TIMEOUT_S = 5.0
_METHOD = re.compile(r"^[A-Za-z]+$")


class UsageError(Exception):
    """The command line asks for something impossible (exit 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    explain = sub.add_parser("explain", help="explain the routing decision for one request")
    _common(explain)
    explain.add_argument(
        "request",
        metavar="REQUEST",
        help='the request line, METHOD and absolute URL: "GET https://shop.example.com/api?x=1"',
    )
    explain.add_argument(
        "--from",
        dest="client_ip",
        default=DEFAULT_CLIENT,
        metavar="IP",
        help="the client's address, for access rules, affinity and hashing "
        f"(default {DEFAULT_CLIENT}, a documentation address)",
    )
    explain.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header; repeatable (default: none but Host)",
    )
    explain.add_argument(
        "--cookie",
        action="append",
        default=[],
        metavar="K=V",
        help="a request cookie; repeatable (default: none)",
    )
    explain.add_argument(
        "--listener",
        default=None,
        metavar="NAME",
        help="listener name (default: the first HTTP/HTTPS listener matching the URL's "
        "scheme and port)",
    )
    explain.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="seed the table's randomness (default: unseeded)",
    )
    listing = sub.add_parser("list", help="print the compiled routes and backends")
    _common(listing)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="FILE", help="routing config (YAML/JSON)")
    p.add_argument(
        "--registry",
        default=None,
        metavar="DIR",
        help="read records from this files registry directory (default: the registry the "
        "config names, files, etcd or consul)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    if args.action == "explain":
        try:
            request_line(args.request)
        except UsageError as exc:
            print(f"portway routes: error: {exc}", file=sys.stderr)
            return 2
    try:
        config = _load_config(args.config)
        records = _load_records(config, args.registry)
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


class RegistryUnreadable(Exception):
    """The records cannot be read; the message says which registry and why."""


def _load_records(config: GatewayConfig, directory: str | None) -> list[ServiceRecord]:
    """The records the config's registry (or `directory`) holds now; says on stderr what it read."""
    from portway.registry.backends import open_registry, root_from_prefix
    from portway.registry.decode import collect_bad_records

    settings = config.registry
    if directory is None and not any(b.service is not None for b in config.backends):
        return []  # static endpoints only: no registry is read
    kind = "files" if directory is not None else settings.type
    path = directory if directory is not None else settings.path
    where = _registry_place(kind, path, settings.endpoints)
    if kind == "files":
        from portway.commands.registry import (
            directory_source,
            files_directory,
            missing_directory,
        )

        flag = "--registry" if directory is not None else "registry.path in the config"
        folder = files_directory(path)
        problem = missing_directory(folder, directory_source(path, flag))
        if problem is not None:
            raise RegistryUnreadable(f"cannot read the records: {problem}")
        path = str(folder)
    registry = open_registry(
        kind, path=path, endpoints=settings.endpoints, root=root_from_prefix(settings.prefix)
    )

    async def read() -> list[ServiceRecord]:
        try:
            snap = await asyncio.wait_for(registry.snapshot(), REGISTRY_TIMEOUT_S)
        finally:
            await registry.close()
        return [snap.records[key] for key in sorted(snap.records, key=lambda k: k.path())]

    with collect_bad_records() as bad:
        try:
            records = asyncio.run(read())
        except TimeoutError:
            raise RegistryUnreadable(
                f"cannot read the records from {where}: no answer in {REGISTRY_TIMEOUT_S:g} s"
            ) from None
        except Exception as exc:
            raise RegistryUnreadable(f"cannot read the records from {where}: {exc}") from None
    for key, error in sorted(bad.items()):
        print(f"portway routes: bad record {key} skipped: {error}", file=sys.stderr)
    print(f"portway routes: {len(records)} records from {where}", file=sys.stderr)
    return records


def _registry_place(kind: str, path: str | None, endpoints: tuple[str, ...]) -> str:
    if kind == "files":
        from portway.commands.registry import files_directory

        return f"the files registry {str(files_directory(path))!r}"
    shown = ", ".join(endpoints) or "its default address"
    return f"the {kind} registry at {shown}"


def request_line(text: str) -> tuple[str, str]:
    """`"GET https://host/path"` → ("GET", url); anything else is a `UsageError`."""
    parts = text.split()
    example = '"GET http://shop.example.com/"'
    if len(parts) != 2 or not _METHOD.match(parts[0]):
        raise UsageError(f"REQUEST is 'METHOD URL', e.g. {example}; got {text!r}")
    method, url = parts
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise UsageError(
            f"the URL is absolute (http:// or https:// and a host), e.g. {example}; got {url!r}"
        )
    return method.upper(), url


def _explain(table: RoutingTable, config: GatewayConfig, args: argparse.Namespace) -> int:
    from gateway.routing.decision import RequestFacts
    from gateway.routing.endpoints import EndpointState
    from gateway.routing.explain import explain_http

    method, url = request_line(args.request)
    parts = urlsplit(url)
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
        method=method,
        host=host,
        path=parts.path or "/",
        query=parts.query,
        headers=headers,
        client_ip=args.client_ip,
        listener=listener,
    )
    decision = explain_http(table, facts, EndpointState())
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
            targets = ", ".join(f"{n}×{w}" for n, w in zip(split.names, split.weights, strict=True))
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
