"""Route matches (path, headers, query, method) and filters (headers, rewrite, redirect,
mirror, CORS): Gateway API HTTPRoute vocabulary in this file's camelCase shape."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from gateway.config.values import CONFIG, Duration, PathMatchType, Percent, Port, StringMatchType


@dataclass(frozen=True, slots=True, config=CONFIG)
class PathMatch:
    type: PathMatchType = PathMatchType.PATH_PREFIX
    value: str = "/"


@dataclass(frozen=True, slots=True, config=CONFIG)
class HeaderMatch:
    """Match on a header (case-insensitive name); `RegularExpression` uses re.fullmatch."""

    name: str
    value: str
    type: StringMatchType = StringMatchType.EXACT


@dataclass(frozen=True, slots=True, config=CONFIG)
class QueryParamMatch:
    name: str
    value: str
    type: StringMatchType = StringMatchType.EXACT


@dataclass(frozen=True, slots=True, config=CONFIG)
class RouteMatch:
    """All conditions must hold (AND); a rule's matches are alternatives (OR)."""

    path: PathMatch = PathMatch()
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    method: str | None = Field(default=None, pattern=r"^[A-Z]+$")


@dataclass(frozen=True, slots=True, config=CONFIG)
class HeaderMatchValue:
    name: str
    value: str


@dataclass(frozen=True, slots=True, config=CONFIG)
class HeaderModifier:
    """Gateway API RequestHeaderModifier / ResponseHeaderModifier."""

    set: tuple[HeaderMatchValue, ...] = ()
    add: tuple[HeaderMatchValue, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, config=CONFIG)
class UrlRewrite:
    """Rewrite the Host and/or path before forwarding (Gateway API URLRewrite).

    `replacePrefixMatch` replaces the rule's matched PathPrefix (so every match
    of the rule must be a PathPrefix); `replaceFullPath` the whole path.
    """

    hostname: str | None = None
    replace_prefix_match: str | None = None
    replace_full_path: str | None = None


@dataclass(frozen=True, slots=True, config=CONFIG)
class RequestRedirect:
    """Answer with a redirect instead of forwarding (Gateway API RequestRedirect).

    Unset parts keep the request's: scheme (the listener's), hostname, port
    (omitted when it is the scheme's default), path and query. `path` is
    shorthand for `replaceFullPath`; `replacePrefixMatch` replaces the matched
    PathPrefix, as in `UrlRewrite`.
    """

    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    port: Port | None = None
    path: str | None = None
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


@dataclass(frozen=True, slots=True, config=CONFIG)
class RequestMirror:
    """Send a copy of `percent` of the requests to `backend` (Gateway API RequestMirror).

    Fire-and-forget: the copy's response is discarded, and it never delays or
    fails the request being served.
    """

    backend: str
    percent: Percent = 100.0


@dataclass(frozen=True, slots=True, config=CONFIG)
class Cors:
    """Cross-origin resource sharing (Gateway API v1.5 HTTPCORSFilter).

    Preflights (OPTIONS with Origin and Access-Control-Request-Method) are
    answered by the gateway; other requests from an allowed origin get the
    Access-Control-Allow-Origin / -Credentials / -Expose-Headers response
    headers. Origins are `scheme://host[:port]`, `*`, or with a wildcard
    label (`https://*.example.com`); methods and headers may be `*`.
    """

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age_s: Duration = Field(default=5.0, alias="maxAge")


@dataclass(frozen=True, slots=True, config=CONFIG)
class Filters:
    """A rule's filters, applied in this order: CORS, redirect, request header
    modifier, URL rewrite, mirrors; response header modifier on the way back."""

    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    url_rewrite: UrlRewrite | None = None
    redirect: RequestRedirect | None = None
    mirrors: tuple[RequestMirror, ...] = ()
    cors: Cors | None = None
    preserve_host: bool = True


@dataclass(frozen=True, slots=True, config=CONFIG)
class BackendFilters:
    """Filters of one backendRef, applied after the rule's when it is chosen."""

    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
