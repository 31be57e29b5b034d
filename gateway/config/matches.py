"""Route matches (path, headers, query, method) and filters (headers, rewrite, redirect)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from gateway.config.values import CONFIG, PathMatchType, Port, StringMatchType


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
    """Rewrite the Host and/or path before forwarding (Gateway API URLRewrite)."""

    hostname: str | None = None
    replace_prefix_match: str | None = None
    replace_full_path: str | None = None


@dataclass(frozen=True, slots=True, config=CONFIG)
class RequestRedirect:
    """Answer with a redirect instead of forwarding (Gateway API RequestRedirect)."""

    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    port: Port | None = None
    path: str | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


@dataclass(frozen=True, slots=True, config=CONFIG)
class Filters:
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    url_rewrite: UrlRewrite | None = None
    redirect: RequestRedirect | None = None
    preserve_host: bool = True
