"""The filter chain's contract: stages, request filters, and answers made at the gateway.

Theory of operation. A matched rule's filters run between route match and the
upstream, in the order Gateway API and Envoy give them (`FilterStage`):
filters that may answer the request themselves first (CORS preflight,
redirect, then access rules, authentication and rate limits), then the
edits of the request (header modifier, URL rewrite), then the copies made of
the final request (mirrors). The response comes back through the rule's
response header modifier.

Everything a filter needs from the config is resolved once, when the table is
compiled: `gateway.http.plan.build_plan` (the hook `compile_table` calls for
each rule, see `gateway.routing.route.RulePlanner`) builds the rule's filters
and folds the constant ones into bytes. So per request:

- a `RequestFilter` is called with the `Exchange` (as an `ExchangeView`), the routing facts and the
  loop clock; it returns None to let the request go on, or a `LocalAnswer`
  the proxy sends instead of forwarding (its headers, `Content-Length`, the
  request id and `Connection: close` are framed by the proxy, which also
  drops the body of an answer to HEAD and of a 1xx/204/304). A filter may
  add response header lines for the client to `ex.response_lines` (CORS does,
  for an allowed origin);
- header modifiers and URL rewrites have nothing left to decide: they are
  bytes in the plan (`RulePlan.request_lines`, `request_drop`, ...);
- a `ForwardFilter` sees the request as it goes upstream (head built, body
  bytes that arrived with it) and must not delay or fail it (mirrors).

A rule without filters pays one truthiness test per kind (`if plan.request_filters`).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.context import GatewayContext
    from gateway.routing.facts import RequestFacts
    from gateway.routing.table import RoutingTable

HeaderLines = tuple[tuple[bytes, bytes], ...]


class ExchangeView(Protocol):
    """What a filter sees of the request being served (`http.exchange.Exchange`).

    Read-only but for `response_lines`, `query` and `headers`. A Protocol rather than the class so
    that the filters do not import the exchange, which holds the rule's plan,
    which holds the filters.
    """

    response_lines: bytes
    """Header lines for the client's response (`Name: value\\r\\n` each)."""
    query: bytes
    """The query as forwarded (auth removes an API key passed in it)."""
    headers: list[tuple[bytes, bytes]]
    """The forwarded request headers, as received, in arrival order (auth removes
    the credentials it consumed)."""

    @property
    def method(self) -> bytes: ...
    @property
    def host(self) -> bytes:
        """The Host (or absolute-form authority) as received, port included."""
        ...

    @property
    def path(self) -> bytes: ...
    @property
    def origin(self) -> bytes:
        """The Origin header, b"" without one (captured while the head was parsed)."""
        ...

    @property
    def fwd(self) -> dict[bytes, bytes] | None:
        """Forwarding headers believed (trusted peers only), lowercased names."""
        ...

    @property
    def scheme(self) -> bytes: ...
    @property
    def started(self) -> float: ...
    @property
    def table(self) -> RoutingTable | None: ...
    @property
    def line(self) -> bytes:
        """The upstream request line (forward filters only)."""
        ...

    @property
    def head(self) -> bytes:
        """The upstream header block without Host (forward filters only)."""
        ...

    @property
    def fixed_host(self) -> bytes: ...
    @property
    def body(self) -> list[bytes] | None: ...
    @property
    def body_done(self) -> bool: ...
    @property
    def chunked(self) -> bool: ...
    @property
    def upgrade(self) -> bytes: ...


class FilterStage(enum.IntEnum):
    """Where a filter runs; lower first (the chain is sorted by stage at build)."""

    CORS = 10
    """Answers preflights; notes the response headers of allowed cross-origin requests."""
    REDIRECT = 20
    ACCESS = 30
    """CIDR/geo allow and deny (edge security)."""
    AUTH = 40
    RATE_LIMIT = 50
    REQUEST_HEADERS = 60
    URL_REWRITE = 70
    MIRROR = 80


class LocalAnswer:
    """A response the gateway makes itself instead of forwarding.

    `headers` are (name, value) pairs without framing (the proxy adds
    Content-Length, the request id and Connection); `cause` is what the access
    log's response flags and `portway-error` say ("" for answers that are not
    errors, such as a redirect or a CORS preflight).
    """

    __slots__ = ("body", "cause", "headers", "status")

    def __init__(
        self, status: int, headers: HeaderLines = (), body: bytes = b"", cause: str = ""
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.cause = cause

    def __repr__(self) -> str:
        return f"LocalAnswer({self.status}, {self.headers!r}, {self.body!r}, {self.cause!r})"


class RequestFilter(Protocol):
    """A filter that looks at each request before it is forwarded and may answer it."""

    @property
    def stage(self) -> FilterStage:
        """Where it runs in the chain (a class constant of each filter)."""
        ...

    def on_request(self, ex: ExchangeView, facts: RequestFacts, now: float) -> LocalAnswer | None:
        """None to go on; a `LocalAnswer` to answer now (nothing is forwarded).

        `facts` are the routing facts (method, host without port, path, query,
        lowercased headers on demand, client address, listener); `ex.scheme` is
        the scheme the request came in with; `now` is the loop's monotonic clock.
        Must not block; must not raise for any request a client can send.
        """
        ...


class ForwardFilter(Protocol):
    """A filter that sees the request as forwarded (head built) and must not hold it up."""

    @property
    def stage(self) -> FilterStage:
        """Where it runs in the chain (a class constant of each filter)."""
        ...

    def on_forward(self, ex: ExchangeView, facts: RequestFacts, ctx: GatewayContext) -> None:
        """Act on the outgoing request (`ex.line`, `ex.head`, `ex.body`); never raise."""
        ...
