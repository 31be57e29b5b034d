"""What the HTTP proxy does for a matched rule: its filter chain, built once per rule.

`build_plan` is the hook the table compiler calls for every rule it compiles
(`compile_table(..., plan_rule=build_plan)`; `compile_http_table` is that
call): the rule then carries its `RulePlan` (`CompiledRule.plan`) for as long
as it lives, shared by every table that keeps the rule. No plan is built or
looked up on the request path. A plan is the rule's filter chain
(`gateway.http.filters`) in the form the proxy applies it: request filters
(CORS, redirect, and the edge's access/auth/rate-limit filters) in stage
order, the header modifiers and URL rewrite as ready bytes (`Name: value\\r\\n`
lines to append, lowercased names to drop), the mirrors, the rule's timeouts
as plain floats, and one plan per backendRef that has filters of its own
(the rule's edits followed by the backendRef's).

Also here: the `Via` line per protocol version and the forwarding header
lines of one client connection, both pure byte builders.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from gateway.config.model import Filters, Route, Rule
from gateway.http import head as hh
from gateway.http.filters.access import AccessFilter, access_check
from gateway.http.filters.auth import auth_filter
from gateway.http.filters.base import ForwardFilter, RequestFilter
from gateway.http.filters.cors import CorsFilter
from gateway.http.filters.header_modifier import HeaderEdits
from gateway.http.filters.mirror import MirrorFilter
from gateway.http.filters.ratelimit import RateLimitFilter, bucket_store
from gateway.http.filters.redirect import RedirectFilter
from gateway.http.filters.rewrite import PathRewrite, path_rewrite

if TYPE_CHECKING:
    from gateway.config.model import GatewayConfig
    from gateway.routing.route import CompiledRule
    from gateway.routing.table import RoutingTable


@dataclass(frozen=True, slots=True)
class RulePlan:
    """A rule's filter chain and timeouts as the proxy applies them (see module docstring)."""

    request_filters: tuple[RequestFilter, ...]
    """Filters that may answer the request, in `FilterStage` order; () for most rules."""
    forward_filters: tuple[ForwardFilter, ...]
    """Filters that see the forwarded request (mirrors); () for most rules."""
    request_drop: frozenset[bytes]
    """Lowercased request header names removed before forwarding (remove ∪ set)."""
    request_lines: bytes
    """The request header modifier's `set` and `add` headers, as joined header lines."""
    response_drop: frozenset[bytes]
    response_lines: bytes
    path_rewrite: PathRewrite | None
    """The URL rewrite's path part, None when the path is forwarded as received."""
    host_rewrite: bytes
    """A fixed upstream Host (URLRewrite hostname), or b""."""
    preserve_host: bool
    request_s: float
    per_try_s: float
    """The per-try deadline in seconds, 0.0 when only `request_s` bounds a try."""
    idle_s: float
    """How long the client connection may stay idle after a request of this rule."""
    backend_plans: tuple[tuple[str, RulePlan], ...] = ()
    """(backend name, plan) for each backendRef with filters of its own."""
    max_body_bytes: int = -1
    """The rule's request body limit (`maxRequestBodyBytes`), -1 when it sets none."""

    def for_backend(self, name: str) -> RulePlan:
        """The plan of a request sent to backend `name` (this one unless its ref has filters)."""
        for backend, plan in self.backend_plans:
            if backend == name:
                return plan
        return self


def build_plan(rule: CompiledRule, route: Route | None = None) -> RulePlan:
    """The plan of a `gateway.routing.route.CompiledRule` (the compiler's `plan_rule` hook)."""
    config = rule.config
    filters = config.filters if config is not None else Filters()
    retry = rule.retry
    timeouts = rule.timeouts
    per_try = (retry.per_try_timeout_s if retry is not None else None) or (
        timeouts.backend_request_s
    )
    answering: list[RequestFilter] = []
    if filters.cors is not None:
        answering.append(CorsFilter(filters.cors))
    if filters.redirect is not None:
        answering.append(RedirectFilter(filters.redirect, rule.prefixes))
    answering.extend(edge_filters(config, route))
    answering.sort(key=lambda f: f.stage)
    regions = tuple(route.allowed_regions) if route is not None else ()
    mirrors: list[ForwardFilter] = [
        MirrorFilter(
            m.backend,
            m.percent,
            regions=regions,
            timeout_s=float(timeouts.request_s),
            rule=rule.name,
        )
        for m in filters.mirrors
        if m.percent > 0.0  # never copies: nothing to run per request
    ]
    request = HeaderEdits.of(filters.request_headers)
    response = HeaderEdits.of(filters.response_headers)
    rw = filters.url_rewrite
    plan = RulePlan(
        request_filters=tuple(answering),
        forward_filters=tuple(mirrors),
        request_drop=request.drop,
        request_lines=request.lines,
        response_drop=response.drop,
        response_lines=response.lines,
        path_rewrite=path_rewrite(rw, rule.prefixes),
        host_rewrite=rw.hostname.encode("latin-1") if rw is not None and rw.hostname else b"",
        preserve_host=filters.preserve_host,
        request_s=float(timeouts.request_s),
        per_try_s=float(per_try or 0.0),
        idle_s=float(timeouts.idle_s),
        max_body_bytes=_body_limit(config),
    )
    backend_plans = []
    for ref in config.backend_refs if config is not None else ():
        own = ref.filters
        if own is None:
            continue
        req = request.then(HeaderEdits.of(own.request_headers))
        resp = response.then(HeaderEdits.of(own.response_headers))
        backend_plans.append(
            (
                ref.name,
                replace(
                    plan,
                    request_drop=req.drop,
                    request_lines=req.lines,
                    response_drop=resp.drop,
                    response_lines=resp.lines,
                ),
            )
        )
    if backend_plans:
        plan = replace(plan, backend_plans=tuple(backend_plans))
    return plan


def _body_limit(rule: Rule | None) -> int:
    limit = rule.max_request_body_bytes if rule is not None else None
    return -1 if limit is None else limit


def edge_filters(rule: Rule | None, route: Route | None) -> list[RequestFilter]:
    """The edge's request filters of a rule: its route's access and auth, its rate limit."""
    out: list[RequestFilter] = []
    if route is None:
        return out
    if route.access is not None:
        out.append(AccessFilter(access_check(route.access)))
    if route.auth is not None:
        out.append(auth_filter(route.auth))
    if rule is not None and rule.rate_limit is not None:
        index = route.rules.index(rule) if rule in route.rules else 0
        identity = route.auth.identity_header if route.auth is not None else "x-portway-identity"
        store = bucket_store(route.name, index, rule.rate_limit)
        out.append(RateLimitFilter(store, identity_header=identity))
    return out


def compile_http_table(
    config: GatewayConfig, records: Any, *, version: str = "", seed: int | None = None
) -> RoutingTable:
    """`compile_table` with every rule's plan built: the table the HTTP proxy serves."""
    from gateway.routing.compiler import compile_table

    return compile_table(config, records, version=version, seed=seed, plan_rule=build_plan)


def _lines(pairs: Any) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in pairs)


_VIA: Final[dict[tuple[str, str], bytes]] = {}


def via_line(version: str, pseudonym: str) -> bytes:
    """`Via: 1.1 <pseudonym>\\r\\n` for the client's HTTP version, memoised."""
    line = _VIA.get((version, pseudonym))
    if line is None:
        proto = b"1.0 " if version == "1.0" else b"1.1 "
        line = _VIA[(version, pseudonym)] = b"Via: " + proto + pseudonym.encode("latin-1") + b"\r\n"
    return line


def forwarding_lines(
    incoming: dict[bytes, bytes] | None,
    *,
    trusted: bool,
    client_ip: bytes,
    proto: bytes,
    host: bytes,
) -> bytes:
    """X-Forwarded-For/-Proto/-Host and Forwarded as joined header lines."""
    return _lines(
        hh.forwarding_headers(
            incoming or {}, trusted=trusted, client_ip=client_ip, proto=proto, host=host
        )
    )


_PLAIN_FORWARDING: Final[dict[tuple[str, bytes, bytes], bytes]] = {}
_MAX_PLAIN_FORWARDING: Final = 4096


def plain_forwarding_lines(client_ip: str, proto: bytes, host: bytes) -> bytes:
    """`forwarding_lines` for a request that brought no forwarding headers we believe.

    The same bytes for every connection from one client address to one Host, so
    they are shared (an idle keep-alive connection keeps them): a memo dropped
    whole when it reaches `_MAX_PLAIN_FORWARDING` entries.
    """
    key = (client_ip, proto, host)
    lines = _PLAIN_FORWARDING.get(key)
    if lines is None:
        if len(_PLAIN_FORWARDING) >= _MAX_PLAIN_FORWARDING:
            _PLAIN_FORWARDING.clear()
        lines = _PLAIN_FORWARDING[key] = forwarding_lines(
            None, trusted=False, client_ip=client_ip.encode("ascii"), proto=proto, host=host
        )
    return lines


_SHARED: Final[dict[bytes, bytes]] = {}


def shared(value: bytes) -> bytes:
    """One copy of header bytes that many idle connections would each keep (the
    tail of a memoised request head: forwarding lines and Via). Bounded like
    the forwarding memo."""
    found = _SHARED.get(value)
    if found is None:
        if len(_SHARED) >= _MAX_PLAIN_FORWARDING:
            _SHARED.clear()
        found = _SHARED[value] = value
    return found
