"""Cross-reference and combination checks on a config whose shape is valid.

pydantic checks each value on its own; these rules need the whole file: a
route naming a listener or backend that does not exist, two listeners on one
socket that cannot share it (`listener_checks`), a TCP route with HTTP
matches, a data-residency rule that no static endpoint can satisfy. Each
rule reports at the key that should change, using the file's camelCase
paths so the position lookup (`issue_report`) finds it.

Binding rule the compiler shares: a route that names no `listeners` binds to
every HTTP/HTTPS listener; TCP and TLS-passthrough routes must name theirs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

from gateway.config.errors import ConfigIssue, Path
from gateway.config.filter_checks import check_filters
from gateway.config.hostnames import check_hostnames
from gateway.config.issue_report import IssueReport
from gateway.config.listener_checks import check_listeners
from gateway.config.model import (
    Backend,
    GatewayConfig,
    HashSource,
    HeaderMatch,
    Listener,
    ListenerProtocol,
    PathMatchType,
    QueryParamMatch,
    Route,
    RouteMatch,
    Rule,
    StaticEndpoint,
    StringMatchType,
)
from gateway.config.rollout_checks import check_rollout
from gateway.config.source import SourceMap
from gateway.config.unread_fields import (
    HASH_POLICIES,
    check_balancer,
    check_layer4_route,
    check_registry,
)

L4_PROTOCOLS = frozenset({ListenerProtocol.TCP, ListenerProtocol.TLS})


def check_semantics(
    config: GatewayConfig, positions: SourceMap, filename: str
) -> list[ConfigIssue]:
    """Every cross-reference problem in `config` (errors and warnings)."""
    report = IssueReport(positions, filename)
    _check_unique(report, "listeners", [item.name for item in config.listeners])
    _check_unique(report, "routes", [item.name for item in config.routes])
    _check_unique(report, "backends", [item.name for item in config.backends])
    check_listeners(report, config.listeners)
    check_registry(report.add, config.registry)
    for index, backend in enumerate(config.backends):
        _check_backend(report, ("backends", index), backend)
    listeners = {listener.name: listener for listener in config.listeners}
    backends = {backend.name: backend for backend in config.backends}
    used: set[str] = set()
    for index, route in enumerate(config.routes):
        used |= _check_route(report, ("routes", index), route, listeners, backends)
    for index, backend in enumerate(config.backends):
        if backend.name not in used and config.routes:
            report.add(("backends", index, "name"), "no route uses this backend", warn=True)
    if not config.listeners and config.routes:
        report.add(("listeners",), "no listeners: the gateway accepts no traffic", warn=True)
    return report.issues


def _check_unique(report: IssueReport, section: str, names: Sequence[str]) -> None:
    first: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in first:
            earlier = report.line_of((section, first[name]))
            report.add(
                (section, index, "name"),
                f"duplicate name {name!r} (first used at line {earlier}); names must be unique",
            )
        else:
            first[name] = index


def _check_backend(report: IssueReport, path: Path, backend: Backend) -> None:
    if backend.service is None and not backend.endpoints:
        report.add(
            path, "a backend needs exactly one of `service` (registry) or `endpoints` (static)"
        )
    elif backend.service is not None and backend.endpoints:
        report.add(
            (*path, "endpoints"),
            "a backend has either `service` or `endpoints`, not both; split it into two backends",
            at_key=True,
        )
    balancer = backend.load_balancer
    hash_path = (*path, "loadBalancer", "hashOn")
    if balancer.policy in HASH_POLICIES and balancer.hash_on is not None:
        source = balancer.hash_on.source
        if source in (HashSource.HEADER, HashSource.COOKIE) and not balancer.hash_on.name:
            report.add(hash_path, f"hashing on a {source.value} needs `name`: which {source.value}")
    check_balancer(report.add, path, backend)
    if backend.allowed_regions:
        _check_residency(
            report, (*path, "allowedRegions"), backend, set(backend.allowed_regions), "backend"
        )


def _check_residency(
    report: IssueReport, path: Path, backend: Backend, allowed: set[str], owner: str
) -> None:
    """Static endpoints outside the allowed regions: all → error, some → warning."""
    if not backend.endpoints:
        return
    outside = [ep for ep in backend.endpoints if ep.region not in allowed]
    regions = ", ".join(sorted(allowed)) or "(none)"
    if len(outside) == len(backend.endpoints):
        report.add(
            path,
            f"every static endpoint of backend {backend.name!r} is outside this {owner}'s "
            f"allowedRegions [{regions}] ({_where(outside)}); it could never be served",
        )
    elif outside:
        report.add(
            path,
            f"static endpoints of backend {backend.name!r} outside allowedRegions [{regions}] "
            f"will never receive traffic from this {owner}: {_where(outside)}",
            warn=True,
        )


def _where(endpoints: Sequence[StaticEndpoint]) -> str:
    shown = [f"{ep.address}:{ep.port} in {ep.region or 'no region'}" for ep in endpoints[:3]]
    more = f" and {len(endpoints) - 3} more" if len(endpoints) > 3 else ""
    return ", ".join(shown) + more


def _check_route(
    report: IssueReport,
    path: Path,
    route: Route,
    listeners: dict[str, Listener],
    backends: dict[str, Backend],
) -> set[str]:
    """Check one route; returns the backend names it uses."""
    protocols: set[ListenerProtocol] = set()
    for index, name in enumerate(route.listeners):
        listener = listeners.get(name)
        if listener is None:
            report.add((*path, "listeners", index), _unknown("listener", name, listeners))
        else:
            protocols.add(listener.protocol)
    layer4 = bool(protocols) and protocols <= L4_PROTOCOLS
    if protocols & L4_PROTOCOLS and not layer4:
        report.add(
            (*path, "listeners"),
            "a route binds either HTTP/HTTPS listeners or TCP/TLS listeners, not both",
        )
    check_hostnames(report.add, (*path, "hostnames"), route.hostnames)
    if layer4:
        _check_layer4_route(report, path, route, ListenerProtocol.TCP in protocols)
    used: set[str] = set()
    for index, rule in enumerate(route.rules):
        used |= _check_rule(report, (*path, "rules", index), rule, route, backends)
    return used


def _check_layer4_route(report: IssueReport, path: Path, route: Route, has_tcp: bool) -> None:
    if len(route.rules) != 1:
        report.add(
            (*path, "rules"),
            f"a TCP/TLS route has exactly one rule (connections carry no HTTP to match); "
            f"got {len(route.rules)}",
            at_key=True,
        )
    if has_tcp and route.hostnames:
        report.add(
            (*path, "hostnames"),
            "a TCP route cannot match hostnames (use a TLS listener to route on SNI)",
            at_key=True,
        )
    for index, rule in enumerate(route.rules):
        rule_path = (*path, "rules", index)
        for match_index, match in enumerate(rule.matches):
            default_path = match.path.type is PathMatchType.PATH_PREFIX and match.path.value == "/"
            if not default_path or match.headers or match.query_params or match.method:
                report.add(
                    (*rule_path, "matches", match_index),
                    "TCP/TLS routes cannot match on path, headers, query or method",
                )
        if rule.filters != type(rule.filters)() or any(
            ref.filters is not None for ref in rule.backend_refs
        ):
            report.add(
                (*rule_path, "filters"), "TCP/TLS routes cannot use HTTP filters", at_key=True
            )
        if rule.canary is not None and (rule.canary.header or rule.canary.cookie):
            report.add(
                (*rule_path, "canary"),
                "a TCP/TLS canary can split by percent only; header and cookie overrides need HTTP",
            )
        if rule.canary is not None and rule.canary.rollout is not None:
            report.add(
                (*rule_path, "canary", "rollout"),
                "not supported yet on TCP/TLS routes: a rollout is judged on HTTP status "
                "codes and latencies, which a TCP connection does not have",
                at_key=True,
            )
    check_layer4_route(report.add, path, route)


def _check_rule(
    report: IssueReport, path: Path, rule: Rule, route: Route, backends: dict[str, Backend]
) -> set[str]:
    used: set[str] = set()
    for index, ref in enumerate(rule.backend_refs):
        ref_path = (*path, "backendRefs", index, "name")
        backend = backends.get(ref.name)
        if backend is None:
            report.add(ref_path, _unknown("backend", ref.name, backends))
            continue
        used.add(ref.name)
        if route.allowed_regions:
            _check_residency(report, ref_path, backend, _allowed(route, backend), "route")
    if rule.backend_refs and all(ref.weight == 0 for ref in rule.backend_refs):
        report.add(
            (*path, "backendRefs"),
            "every backendRef has weight 0, so no request can be routed; give one a weight > 0",
            at_key=True,
        )
    if rule.canary is not None:
        canary = rule.canary
        canary_path = (*path, "canary")
        backend = backends.get(canary.backend)
        if backend is None:
            report.add((*canary_path, "backend"), _unknown("backend", canary.backend, backends))
        else:
            used.add(canary.backend)
            if route.allowed_regions:
                allowed = _allowed(route, backend)
                _check_residency(report, (*canary_path, "backend"), backend, allowed, "route")
        if canary.percent == 0 and not (canary.header or canary.cookie or canary.rollout):
            report.add(
                canary_path,
                "this canary gets no traffic: set `percent` > 0, a `header` or `cookie` "
                "override, or a `rollout`",
            )
        if canary.backend in {ref.name for ref in rule.backend_refs}:
            report.add(
                (*canary_path, "backend"),
                "the canary backend is also a regular backendRef of this rule",
                warn=True,
            )
    for index, match in enumerate(rule.matches):
        _check_match(report, (*path, "matches", index), match)
    used |= check_filters(report.add, _unknown, path, rule, backends)
    check_rollout(report.add, path, rule)
    filters = rule.filters
    if filters.redirect is not None and filters.url_rewrite is not None:
        report.add(
            (*path, "filters", "redirect"),
            "a rule either redirects or rewrites and forwards; remove `redirect` or `urlRewrite`",
            at_key=True,
        )
    rewrite = filters.url_rewrite
    if rewrite is not None and rewrite.replace_prefix_match and rewrite.replace_full_path:
        report.add(
            (*path, "filters", "urlRewrite"),
            "set one of `replacePrefixMatch` or `replaceFullPath`, not both",
            at_key=True,
        )
    if (
        rule.rate_limit is not None
        and rule.rate_limit.key == "header"
        and not rule.rate_limit.header
    ):
        report.add((*path, "rateLimit"), "a rate limit keyed by header needs `header`: which one")
    return used


def _allowed(route: Route, backend: Backend) -> set[str]:
    allowed = set(route.allowed_regions)
    return allowed & set(backend.allowed_regions) if backend.allowed_regions else allowed


def _check_match(report: IssueReport, path: Path, match: RouteMatch) -> None:
    if match.path.type is PathMatchType.REGULAR_EXPRESSION:
        _check_regex(report, (*path, "path", "value"), match.path.value)
    elif not match.path.value.startswith("/"):
        report.add((*path, "path", "value"), f"a path starts with '/': {match.path.value!r}")
    value_matches: list[tuple[str, Sequence[HeaderMatch | QueryParamMatch]]] = [
        ("headers", match.headers),
        ("queryParams", match.query_params),
    ]
    for section, items in value_matches:
        for index, item in enumerate(items):
            if item.type is StringMatchType.REGULAR_EXPRESSION:
                _check_regex(report, (*path, section, index, "value"), item.value)


def _check_regex(report: IssueReport, path: Path, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        report.add(path, f"invalid regular expression {pattern!r}: {exc}")


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    message = f"no {kind} named {name!r}"
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean {close[0]!r}?"
    if names:
        message += f" (defined: {', '.join(names)})"
    else:
        message += f" (no {kind}s are defined)"
    return message
