"""What the request path tells the routing core, and what it gets back.

The HTTP proxy fills a `RequestFacts` from the parsed request head (names
lowercased, host without port) and calls `RoutingTable.route_http`; it gets a
`Decision`. A decision with `endpoint is None` is an answer, not a failure of
the core: `error` says which (`no_route` → 404, `no_healthy_upstream` → 503,
`redirect` → the redirect in `redirect_location`/`redirect_status`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.routing.backend import CompiledBackend
    from gateway.routing.endpoints import Endpoint
    from gateway.routing.route import CompiledRoute, CompiledRule

NO_ROUTE = "no_route"
NO_HEALTHY_UPSTREAM = "no_healthy_upstream"
REDIRECT = "redirect"


@dataclass(slots=True)
class RequestFacts:
    """The facts of one request that routing may look at."""

    method: str
    host: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    client_ip: str = ""
    listener: str = ""
    _cookies: dict[str, str] | None = None

    def cookie(self, name: str) -> str | None:
        """A request cookie's value, parsing the Cookie header at most once."""
        if self._cookies is None:
            self._cookies = parse_cookies(self.headers.get("cookie", ""))
        return self._cookies.get(name)


def parse_cookies(header: str) -> dict[str, str]:
    """RFC 6265 `name=value; name2=value2`, lenient about spaces and bad pairs."""
    out: dict[str, str] = {}
    if not header:
        return out
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            out.setdefault(name, value.strip('"'))
    return out


@dataclass(slots=True)
class Decision:
    """The outcome of routing one request or connection.

    `route`/`rule`/`backend` are the compiled objects chosen (None when no
    route matched); `endpoint` is where to connect. `set_cookie` is a
    Set-Cookie value the proxy must add to the response (sticky canary).
    """

    route: CompiledRoute | None = None
    rule: CompiledRule | None = None
    backend: CompiledBackend | None = None
    endpoint: Endpoint | None = None
    error: str = ""
    redirect_location: str = ""
    redirect_status: int = 0
    set_cookie: str = ""
    steps: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form shown by `portway routes explain --json` and the admin API."""
        ep = self.endpoint
        return {
            "route": self.route.name if self.route else None,
            "rule": self.rule.name if self.rule else None,
            "backend": self.backend.name if self.backend else None,
            "endpoint": None if ep is None else ep.to_dict(),
            "error": self.error or None,
            "redirect": {"location": self.redirect_location, "status": self.redirect_status}
            if self.error == REDIRECT
            else None,
            "setCookie": self.set_cookie or None,
            "steps": list(self.steps or ()),
        }
