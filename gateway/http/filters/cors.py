"""CORS (Gateway API v1.5 HTTPCORSFilter): preflights answered here, allowed origins told so.

A request without `Origin` is none of CORS's business and passes untouched.
A preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`) is
answered by the gateway, never forwarded: 200 with the allowed methods,
headers, credentials and max age when the origin is allowed, and without any
Access-Control-* header when it is not (the browser then refuses). Another
request from an allowed origin goes on, and its response gets
Access-Control-Allow-Origin (and -Credentials, -Expose-Headers) through
`ex.response_lines`; from an origin not allowed it goes on untouched.

Origins match case-insensitively: exactly, `*` (any), or with a wildcard
host (`https://*.example.com`: the scheme must match and the host end in
`.example.com`). With credentials allowed, `*` is never sent back: the
request's own origin (or method, or headers) is echoed instead, as browsers
require.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from gateway.config.model import Cors
from gateway.http.filters.base import ExchangeView, FilterStage, LocalAnswer

if TYPE_CHECKING:
    from gateway.routing.facts import RequestFacts

PREFLIGHT_STATUS: Final = 200


def _join(values: tuple[str, ...]) -> bytes:
    return ", ".join(values).encode("latin-1")


class CorsFilter:
    """One rule's CORS policy, with its constant header values prepared as bytes."""

    __slots__ = (
        "any_header",
        "any_method",
        "any_origin",
        "credentials",
        "exact",
        "expose",
        "headers",
        "max_age",
        "methods",
        "wildcards",
    )

    stage: Final = FilterStage.CORS

    def __init__(self, cors: Cors) -> None:
        origins = [o.lower().rstrip("/") for o in cors.allow_origins]
        self.any_origin = "*" in origins
        self.exact = frozenset(o.encode("latin-1") for o in origins if "*" not in o)
        wildcards = []
        for o in origins:
            if o != "*" and "*" in o:
                scheme, _, host = o.partition("://")
                wildcards.append(((scheme + "://").encode(), host.lstrip("*").encode("latin-1")))
        self.wildcards = tuple(wildcards)
        self.any_method = "*" in cors.allow_methods
        self.methods = _join(cors.allow_methods)
        self.any_header = "*" in cors.allow_headers
        self.headers = _join(cors.allow_headers)
        self.expose = _join(cors.expose_headers)
        self.credentials = cors.allow_credentials
        self.max_age = b"%d" % int(cors.max_age_s)

    def allows(self, origin: bytes) -> bool:
        """Whether `origin` (as the client sent it) is an allowed origin."""
        if self.any_origin:
            return True
        origin = origin.lower()
        if origin in self.exact:
            return True
        for scheme, suffix in self.wildcards:
            if (
                origin.startswith(scheme)
                and origin.endswith(suffix)
                and len(origin) > len(scheme) + len(suffix)
            ):
                return True
        return False

    def _allow_origin(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        if self.any_origin and not self.credentials:
            return [(b"Access-Control-Allow-Origin", b"*")]
        out = [(b"Access-Control-Allow-Origin", origin), (b"Vary", b"Origin")]
        if self.credentials:
            out.append((b"Access-Control-Allow-Credentials", b"true"))
        return out

    def on_request(self, ex: ExchangeView, facts: RequestFacts, now: float) -> LocalAnswer | None:
        origin = ex.origin  # captured by the request parser: no header scan here
        if not origin:
            return None
        allowed = self.allows(origin)
        if ex.method == b"OPTIONS":
            method = asked = None
            for name, value in ex.headers:
                size = len(name)
                if size == 29 and name.lower() == b"access-control-request-method":
                    method = value
                elif size == 30 and name.lower() == b"access-control-request-headers":
                    asked = value
            if method is not None:
                return LocalAnswer(PREFLIGHT_STATUS, self.preflight(origin, method, asked, allowed))
        if allowed:
            pairs = self._allow_origin(origin)
            if self.expose:
                pairs.append((b"Access-Control-Expose-Headers", self.expose))
            ex.response_lines += b"".join(n + b": " + v + b"\r\n" for n, v in pairs)
        return None

    def preflight(
        self, origin: bytes, method: bytes, asked: bytes | None, allowed: bool
    ) -> tuple[tuple[bytes, bytes], ...]:
        """The headers of the answer to a preflight (none of CORS's for an origin not allowed)."""
        if not allowed:
            return ()
        pairs = self._allow_origin(origin)
        if self.any_method:
            star = method.strip() if self.credentials else b"*"
            pairs.append((b"Access-Control-Allow-Methods", star))
        elif self.methods:
            pairs.append((b"Access-Control-Allow-Methods", self.methods))
        if self.any_header:
            if asked or not self.credentials:
                star = (asked or b"").strip() if self.credentials else b"*"
                pairs.append((b"Access-Control-Allow-Headers", star))
        elif self.headers:
            pairs.append((b"Access-Control-Allow-Headers", self.headers))
        pairs.append((b"Access-Control-Max-Age", self.max_age))
        return tuple(pairs)
