"""What the request path tells the routing core, and what it gets back.

The HTTP proxy fills a `RequestFacts` (`facts.py`, re-exported here) from the
parsed request head (names lowercased, host without port) and calls
`RoutingTable.route_http`; it gets a `Decision`. A decision with `endpoint`
None is an answer, not a failure of the core: `error` says which (`no_route`
→ 404, `no_healthy_upstream` → 503, `redirect` → the redirect in
`redirect_location`/`redirect_status`).
"""

from __future__ import annotations

from typing import Any, Final

from gateway.routing.backend import CompiledBackend
from gateway.routing.endpoints import Endpoint
from gateway.routing.facts import RequestFacts, parse_cookies
from gateway.routing.route import CompiledRoute, CompiledRule

__all__ = [
    "NO_HEALTHY_UPSTREAM",
    "NO_ROUTE",
    "REDIRECT",
    "Decision",
    "RequestFacts",
    "parse_cookies",
]

NO_ROUTE: Final = "no_route"
NO_HEALTHY_UPSTREAM: Final = "no_healthy_upstream"
REDIRECT: Final = "redirect"


class Decision:
    """The outcome of routing one request or connection.

    `route`/`rule`/`backend` are the compiled objects chosen (None when no
    route matched); `endpoint` is where to connect. `set_cookie` is a
    Set-Cookie value the proxy must add to the response (sticky canary).

    A plain class, not a dataclass: one is made per request, and the compiled
    build (`gateway.compiled`) runs a dataclass's generated `__init__` as
    interpreted Python (~1 µs); this `__init__` compiles to native code.
    """

    __slots__ = (
        "backend",
        "endpoint",
        "error",
        "redirect_location",
        "redirect_status",
        "route",
        "rule",
        "set_cookie",
        "steps",
    )

    def __init__(
        self,
        route: CompiledRoute | None = None,
        rule: CompiledRule | None = None,
        backend: CompiledBackend | None = None,
        endpoint: Endpoint | None = None,
        error: str = "",
        redirect_location: str = "",
        redirect_status: int = 0,
        set_cookie: str = "",
        steps: list[str] | None = None,
    ) -> None:
        self.route = route
        self.rule = rule
        self.backend = backend
        self.endpoint = endpoint
        self.error = error
        self.redirect_location = redirect_location
        self.redirect_status = redirect_status
        self.set_cookie = set_cookie
        self.steps = steps

    def __repr__(self) -> str:
        return f"Decision({self.to_dict()!r})"

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
