"""Each listener's `HostIndex`: which routes it serves, by hostname.

Theory of operation. A route attaches to the listeners it names (all of
them when it names none). On an HTTP or HTTPS listener its hostnames are
intersected with the listener's (Gateway API: exact, or `*.suffix` over one
or more labels; a route without hostnames takes the listener's), and each
match of each rule is filed under the exact hosts, the wildcard suffixes, or
the catch-all tier (`gateway.routing.hosts.HostIndex` resolves them per
request). A TLS passthrough listener routes on SNI the same way with one
match of every path per rule; a TCP listener ignores hostnames. Listener ""
(a request whose listener names none) serves the routes of every HTTP
listener (every route when the config has no listener) and shares the index
of a listener without hostnames serving the same routes. Built by the
compiler (`gateway.routing.compiler`) once per whole compile.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.model import (
    Listener,
    ListenerProtocol,
    PathMatch,
    PathMatchType,
    RouteMatch,
)
from gateway.routing.hosts import HostIndex
from gateway.routing.match import CompiledMatch, MatchSet
from gateway.routing.route import CompiledRoute

_L4_MATCH = RouteMatch(path=PathMatch(type=PathMatchType.PATH_PREFIX, value="/"))
_HTTP = (ListenerProtocol.HTTP, ListenerProtocol.HTTPS)


def host_matches(pattern: str, host: str) -> bool:
    """Gateway API hostname match: exact, or `*.suffix` over one or more labels."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return pattern == host


def effective_hostnames(
    route: tuple[str, ...], listener: tuple[str, ...]
) -> tuple[str, ...] | None:
    """The route's hostnames as seen on a listener; None when they do not intersect."""
    if not listener:
        return route
    if not route:
        return listener
    out = []
    for h in route:
        for lh in listener:
            if host_matches(lh, h) or host_matches(h, lh) or h == lh:
                out.append(h if not h.startswith("*.") or lh.startswith("*.") else lh)
                break
    return tuple(out) or None


def listener_indexes(
    listeners: Sequence[Listener], routes: Sequence[CompiledRoute]
) -> tuple[dict[str, HostIndex], dict[str, HostIndex]]:
    """The HTTP/HTTPS listeners' indexes by name (with listener ""), and the TLS and TCP
    listeners' by name; see the module docstring."""
    http: dict[str, HostIndex] = {}
    l4: dict[str, HostIndex] = {}
    http_routes: list[CompiledRoute] = []
    # indexes of listeners without hostnames by their routes: the index of listener ""
    # is the same as theirs when it serves the same routes (10,000 routes: 4.5 MB)
    unnamed: dict[tuple[int, ...], HostIndex] = {}
    for lst in listeners:
        attached = [r for r in routes if not r.listeners or lst.name in r.listeners]
        lhosts = tuple(h.lower().rstrip(".") for h in lst.hostnames)
        if lst.protocol in _HTTP:
            http[lst.name] = _host_index(attached, lhosts, l4_mode=False)
            if not lhosts:
                unnamed.setdefault(tuple(r.index for r in attached), http[lst.name])
            seen = {id(r) for r in http_routes}
            http_routes += [r for r in attached if id(r) not in seen]
        else:
            ignore_hosts = lst.protocol is ListenerProtocol.TCP
            l4[lst.name] = _host_index(attached, lhosts, l4_mode=True, ignore_hosts=ignore_hosts)
    if not listeners:
        http_routes = list(routes)
    if "" not in http:
        same = unnamed.get(tuple(r.index for r in http_routes))
        http[""] = same if same is not None else _host_index(http_routes, (), l4_mode=False)
    return http, l4


def _host_index(
    routes: Sequence[CompiledRoute],
    listener_hosts: tuple[str, ...],
    *,
    l4_mode: bool,
    ignore_hosts: bool = False,
) -> HostIndex:
    exact: dict[str, list[CompiledMatch]] = {}
    wildcard: dict[str, list[CompiledMatch]] = {}
    catch_all: list[CompiledMatch] = []
    for route in routes:
        hosts = () if ignore_hosts else effective_hostnames(route.hostnames, listener_hosts)
        if hosts is None:
            continue
        matches: list[CompiledMatch] = []
        for rule in route.rules:
            assert rule.config is not None
            specs = (_L4_MATCH,) if l4_mode else rule.config.matches
            for mi, spec in enumerate(specs):
                order = (route.index, rule.index, mi)
                matches.append(CompiledMatch.build(route, rule, spec, order))
        if not hosts:
            catch_all += matches
        for h in hosts:
            if h.startswith("*."):
                wildcard.setdefault(h[1:], []).extend(matches)
            else:
                exact.setdefault(h, []).extend(matches)
    return HostIndex(
        {h: MatchSet(ms) for h, ms in exact.items()},
        {h: MatchSet(ms) for h, ms in wildcard.items()},
        MatchSet(catch_all) if catch_all else None,
    )
