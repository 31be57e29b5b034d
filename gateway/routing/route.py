"""Compiled routes and rules: what the HTTP proxy reads once a request matched.

A `CompiledRule` carries everything of a config `Rule` the proxy needs per
request in ready-to-use form: header edits as lowercased byte pairs, the URL
rewrite as a method, the redirect as a method building the Location, and the
chosen backends (`split`). Values are frozen; the proxy never needs the config
objects, though `config` keeps them for the admin API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config.model import (
    AccessPolicy,
    Auth,
    HeaderModifier,
    ListenerProtocol,
    PathMatchType,
    RateLimit,
    RequestRedirect,
    Retry,
    Route,
    Rule,
    Timeouts,
    UrlRewrite,
)
from gateway.routing.split import BackendSplit

HeaderPairs = tuple[tuple[bytes, bytes], ...]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_prefix(value: str) -> str:
    """`/abc/` → `/abc`; the root prefix `/` becomes `` (matches every path)."""
    return value.rstrip("/")


def header_edits(mod: HeaderModifier | None) -> tuple[HeaderPairs, HeaderPairs, frozenset[bytes]]:
    """(set, add, remove) of a Gateway API header modifier, names lowercased."""
    if mod is None:
        return (), (), frozenset()
    return (
        tuple((h.name.lower().encode("latin-1"), h.value.encode("latin-1")) for h in mod.set),
        tuple((h.name.lower().encode("latin-1"), h.value.encode("latin-1")) for h in mod.add),
        frozenset(n.lower().encode("latin-1") for n in mod.remove),
    )


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """One rule: filters, timeouts and retry policy in the form the proxy applies."""

    name: str
    index: int
    split: BackendSplit
    timeouts: Timeouts
    retry: Retry | None
    rate_limit: RateLimit | None
    request_set: HeaderPairs = ()
    request_add: HeaderPairs = ()
    request_remove: frozenset[bytes] = frozenset()
    response_set: HeaderPairs = ()
    response_add: HeaderPairs = ()
    response_remove: frozenset[bytes] = frozenset()
    host_rewrite: str | None = None
    preserve_host: bool = True
    url_rewrite: UrlRewrite | None = None
    redirect: RequestRedirect | None = None
    prefixes: tuple[str, ...] = ()
    config: Rule | None = field(default=None, repr=False)

    def rewrite_path(self, path: str) -> str:
        """Apply the rule's URLRewrite path modifier (identity without one).

        `replaceFullPath` replaces the whole path. `replacePrefixMatch`
        replaces the longest of the rule's PathPrefix values that matches the
        path, element-wise: `/api` → `/v2` turns `/api/x` into `/v2/x`, and
        `/api` → `/` turns `/api/x` into `/x` (never `//x`).
        """
        rw = self.url_rewrite
        if rw is None:
            return path
        if rw.replace_full_path is not None:
            return rw.replace_full_path
        if rw.replace_prefix_match is None:
            return path
        for prefix in self.prefixes:
            if path == prefix or path.startswith(prefix + "/") or prefix == "":
                rest = path[len(prefix) :]
                new = normalize_prefix(rw.replace_prefix_match)
                out = new + rest
                return out if out.startswith("/") else "/" + out
        return path

    def redirect_location(
        self, host: str, path: str, query: str, listener_protocol: ListenerProtocol | None
    ) -> str:
        """The Location of a RequestRedirect, per Gateway API defaults.

        Scheme defaults to the listener's (https on HTTPS listeners); host to
        the request's; port is omitted when it is the scheme's well-known
        port; path is replaced when the redirect names one; the query stays.
        """
        rd = self.redirect
        assert rd is not None
        request_scheme = "https" if listener_protocol is ListenerProtocol.HTTPS else "http"
        scheme = rd.scheme or request_scheme
        hostname = rd.hostname or host
        port = rd.port
        authority = hostname
        if port is not None and port != _DEFAULT_PORTS[scheme]:
            authority = f"{hostname}:{port}"
        new_path = rd.path if rd.path is not None else path
        return f"{scheme}://{authority}{new_path}" + (f"?{query}" if query else "")


def compile_rule(rule: Rule, index: int, route_name: str, split: BackendSplit) -> CompiledRule:
    f = rule.filters
    req = header_edits(f.request_headers)
    resp = header_edits(f.response_headers)
    prefixes = sorted(
        {
            normalize_prefix(m.path.value)
            for m in rule.matches
            if m.path.type is PathMatchType.PATH_PREFIX
        },
        key=len,
        reverse=True,
    )
    return CompiledRule(
        name=rule.name or f"{route_name}/{index}",
        index=index,
        split=split,
        timeouts=rule.timeouts,
        retry=rule.retry,
        rate_limit=rule.rate_limit,
        request_set=req[0],
        request_add=req[1],
        request_remove=req[2],
        response_set=resp[0],
        response_add=resp[1],
        response_remove=resp[2],
        host_rewrite=f.url_rewrite.hostname if f.url_rewrite else None,
        preserve_host=f.preserve_host,
        url_rewrite=f.url_rewrite,
        redirect=f.redirect,
        prefixes=tuple(prefixes),
        config=rule,
    )


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRoute:
    """A route attached to its listeners, with its rules in config order."""

    name: str
    index: int
    listeners: tuple[str, ...]
    hostnames: tuple[str, ...]
    allowed_regions: tuple[str, ...]
    rules: tuple[CompiledRule, ...]
    access: AccessPolicy | None = None
    auth: Auth | None = None
    config: Route | None = field(default=None, repr=False)
