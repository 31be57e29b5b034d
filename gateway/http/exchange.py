"""One request/response exchange of the HTTP proxy, and request ids.

An `Exchange` is the only object made per request (besides the routing facts
and decision): it holds the parsed head, the body bytes that arrived before an
upstream connection was bound, the routing decision and the try state. Plain
attributes with `__slots__`, no behaviour beyond buffering: the protocol in
`http.proxy` drives it.
"""

from __future__ import annotations

import os
import random
from typing import Final, Protocol

from gateway.context import RequestLog
from gateway.http.plan import RulePlan
from gateway.outcome import NO_FLAG
from gateway.routing.decision import Decision
from gateway.routing.endpoints import Endpoint
from gateway.routing.route import CompiledRule
from gateway.routing.table import RoutingTable
from gateway.upstream.connection import UpstreamConnection

BODY_BUFFER_LIMIT: Final = 64 * 1024
"""Request body bytes held before an upstream is bound (and kept for a replay)."""

PIPELINE: Final = 1
UPSTREAM: Final = 2
BUFFER: Final = 4
TUNNEL_WAIT: Final = 8
DONE: Final = 16
"""Why client reading is paused (a bitmask in `HttpProxy.paused`): a pipelined
request waits, the upstream's write buffer is full, the early body buffer is
full, an upgrade waits for the 101, the connection is finished."""


class Cancellable(Protocol):
    """A pending callback or task of the loop (`TimerHandle`, `Task`): only cancelled.

    A Protocol, not `asyncio.TimerHandle`: uvloop's handles are another class,
    and mypyc checks a declared class at run time (a Protocol it does not).
    """

    def cancel(self) -> object: ...


class ExchangeOwner(Protocol):
    """The client connection an exchange belongs to, as the deadline watch calls it."""

    def timed_out(self, ex: Exchange) -> None:
        """`ex`'s try deadline (`try_deadline`) has passed without a response head."""
        ...


REQUEST_ID_PREFIX: Final = f"{os.getpid():x}-{random.getrandbits(24):06x}-".encode("ascii")


class RequestIds:
    """Cheap unique X-Request-Ids: process prefix + counter (no uuid4 on the hot path).

    A native counter (compiled), not `itertools.count`: one direct call per request.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> bytes:
        self.count += 1
        return REQUEST_ID_PREFIX + str(self.count).encode("ascii")


REQUEST_IDS: Final = RequestIds()


def next_request_id() -> bytes:
    """The next id of this process (`REQUEST_IDS.next`)."""
    return REQUEST_IDS.next()


class Exchange:
    """The state of one request, written by the stages it passes in this order.

    Who writes each attribute, and when (R = `http.request.RequestReader` while
    the head and body are parsed, S = `HttpProxy._start` when the exchange
    starts, F = a request filter of the rule's chain, T = `http.tries.TryRunner`
    per try, P = `http.response.ResponseRelay` as the response arrives, X =
    `ResponseRelay._finish` once at the end). Everything else only reads.

    The request, fixed once parsed (R): `method`, `path`, `query` (raw bytes),
    `version` ("1.0"/"1.1"), `host` (Host or absolute-form authority),
    `headers` (forwarded ones, arrival order), `fwd` (believed forwarding
    headers, trusted peers only), `keep_alive`, `chunked` (client body is
    chunked), `upgrade` (the Upgrade value when the parser accepted one),
    `expect` (100-continue with a body), `traced` (client sent traceparent),
    `origin` (the Origin header, b"" without one: CORS reads it),
    `content_length` (-1 without one), `body_limit` (the listener's, then
    the rule's body limit, -1 for none), `owner` (the connection, for
    `DeadlineWatch` callbacks).
    Body flow (R, then T): `body` (bytes held until an upstream is bound),
    `body_done`, `bytes_in`, `body_sent` (some body reached an upstream),
    `replay` (the whole small body kept for a retry).
    Routing and plan (S): `table` (the table the request started on),
    `decision`, `rule`, `plan` (the rule's, or its backendRef's), `started`,
    `deadline` (whole-request deadline), `scheme` (b"http"/b"https", set
    when the rule has request filters), `counted` (in the pools' active
    requests), `counted_only` (the observer only counts it), `log` (the
    `RequestLog`, when telemetry is detailed) and `token` (the observer's
    opaque handle for it: an OTel span, or None).
    Request filters (F): `response_lines` (header lines for the client's
    response, e.g. CORS), `status` when a filter answers.
    Upstream head (S): `line` (request line), `head` (header block),
    `request_id` (the client's or a new one), `via`, `fixed_host` (a Host
    that overrides the pool's: rewrite or preserved).
    Tries (T): `endpoint`, `conn`, `connecting` (the connect Task),
    `attempts`, `retries`, `retrying`, `reused`, `stale_retried`, `tried`
    (endpoint keys), `try_deadline`, `timer` (a retry backoff's handle),
    `flags` (the `outcome.ResponseFlag` of the last failure: UF, UR, UO, ...;
    S and F set it for answers made at the gateway, the connection DC when
    the client leaves).
    Response (P): `responded`, `status`, `out` (head held for the first body
    write), `chunked_out`, `close_after`, `bytes_out`. End (X): `done`.
    """

    __slots__ = (
        "attempts",
        "body",
        "body_done",
        "body_limit",
        "body_sent",
        "bytes_in",
        "bytes_out",
        "chunked",
        "chunked_out",
        "close_after",
        "conn",
        "connecting",
        "content_length",
        "counted",
        "counted_only",
        "deadline",
        "decision",
        "done",
        "endpoint",
        "expect",
        "fixed_host",
        "flags",
        "fwd",
        "head",
        "headers",
        "host",
        "keep_alive",
        "line",
        "log",
        "method",
        "origin",
        "out",
        "owner",
        "path",
        "plan",
        "query",
        "replay",
        "request_id",
        "responded",
        "response_lines",
        "retries",
        "retrying",
        "reused",
        "rule",
        "scheme",
        "stale_retried",
        "started",
        "status",
        "table",
        "timer",
        "token",
        "traced",
        "tried",
        "try_deadline",
        "upgrade",
        "version",
        "via",
    )

    def __init__(
        self,
        method: bytes,
        path: bytes,
        query: bytes,
        version: str,
        host: bytes,
        headers: list[tuple[bytes, bytes]],
        request_id: bytes,
        fwd: dict[bytes, bytes] | None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self.host = host
        self.headers = headers
        self.request_id = request_id
        self.fwd = fwd
        self.keep_alive = True
        self.chunked = False
        self.body_done = True
        self.upgrade = b""
        self.expect = False
        self.origin = b""
        self.body: list[bytes] | None = None
        self.body_limit = -1
        """Request body bytes accepted (listener's, then the rule's limit); -1: no limit."""
        self.content_length = -1
        """The request's Content-Length, -1 when it has none (chunked or no body)."""
        self.replay: list[bytes] | None = None
        self.body_sent = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.chunked_out = False
        self.close_after = False
        self.conn: UpstreamConnection | None = None
        self.connecting: Cancellable | None = None
        self.counted = False
        self.counted_only = False
        self.traced = False
        self.line = b""
        self.via = b""
        self.plan: RulePlan | None = None
        self.deadline = 0.0
        self.started = 0.0
        self.decision: Decision | None = None
        self.rule: CompiledRule | None = None
        self.table: RoutingTable | None = None
        self.endpoint: Endpoint | None = None
        self.done = False
        self.responded = False
        self.status = 0
        self.fixed_host = b""
        self.flags = NO_FLAG
        self.head = b""
        self.log: RequestLog | None = None
        self.token: object = None
        self.timer: Cancellable | None = None
        self.try_deadline = 0.0
        self.out = b""
        self.owner: ExchangeOwner | None = None
        self.tried: set[str] | None = None
        self.attempts = 0
        self.retries = 0
        self.retrying = False
        self.reused = False
        self.stale_retried = False
        self.scheme = b"http"
        self.response_lines = b""

    def buffer(self, data: bytes) -> int:
        """Hold body bytes until an upstream is bound; returns the bytes held."""
        if self.body is None:
            self.body = [data]
        else:
            self.body.append(data)
        return sum(len(piece) for piece in self.body)
