"""Request redirect (Gateway API RequestRedirect): answered at the gateway, nothing forwarded.

The Location is `gateway.routing.redirect.redirect_location` (pure, shared
with `explain`) of the request's scheme, host, the port the client used, its
path and query.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from gateway.config.model import RequestRedirect
from gateway.http.filters.base import ExchangeView, FilterStage, LocalAnswer
from gateway.routing.redirect import redirect_location

if TYPE_CHECKING:
    from gateway.routing.facts import RequestFacts


def request_port(authority: bytes) -> int | None:
    """The port of a Host header value, None when it names none."""
    _, bracket, rest = authority.rpartition(b"]")
    tail = rest if bracket else authority
    _, colon, port = tail.rpartition(b":")
    return int(port) if colon and port.isdigit() else None


class RedirectFilter:
    """Answers every request of its rule with a redirect."""

    __slots__ = ("prefixes", "redirect")

    stage: Final = FilterStage.REDIRECT

    def __init__(self, redirect: RequestRedirect, prefixes: tuple[str, ...]) -> None:
        self.redirect = redirect
        self.prefixes = prefixes

    def on_request(self, ex: ExchangeView, facts: RequestFacts, now: float) -> LocalAnswer:
        location = redirect_location(
            self.redirect,
            self.prefixes,
            scheme=ex.scheme.decode("ascii"),
            host=facts.host,
            port=request_port(ex.host),
            path=facts.path,
            query=facts.query,
        )
        return LocalAnswer(
            self.redirect.status_code, ((b"Location", location.encode("latin-1", "replace")),)
        )
