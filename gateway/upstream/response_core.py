"""The response side of an upstream HTTP/1.1 connection, without I/O.

Theory of operation. `ResponseCore` owns the httptools (llhttp) response
parser and the framing rules of RFC 9112 for one keep-alive connection to an
endpoint; it never touches a socket. Its inputs are three: `start` (the shell
wrote a request), `receive` (bytes the endpoint sent) and `end_of_stream`
(the endpoint closed). Its outputs are of two kinds:

* what the client side relays, told to the current *sink* (the exchange's
  client connection, `ResponseSink`) as it is parsed: interim responses
  (`on_interim`), the final response head (`on_response_head`, with the
  header lines kept in `lines`), each body chunk (`on_response_body`), the
  opaque bytes of a switched protocol (`tunnel_data`), and `flush_head` at
  the end of a read;
* what the connection must do, returned to the shell as a `ResponseAction`
  (a small int: nothing allocated per event): `REUSE` (the response ended
  on a connection that may serve another request), `CLOSE` (it ended, and
  the connection cannot be reused), `FAIL` (the endpoint broke the protocol
  or closed mid-response: `failure` says how). The shell acts first (gives
  the connection back to its pool, or closes it) and then tells the sink the
  response is complete or failed, so a pipelined request started by that
  sink can take this very connection.

The state of the connection is `ResponseState`; every change of state goes
through `TRANSITIONS`, a table of (state, event) -> state kept as data and
checked in the tests: an event the table does not list in a state is the
endpoint's protocol error (bytes while no request is outstanding, say).

Framing, as RFC 9112 section 6.3 orders it: a response to HEAD, a 1xx, 204
or 304 ends at its head (a HEAD response's Content-Length describes a body
that never comes, and llhttp cannot be told so: such a connection is closed
after its head, never reused); 101 switches the connection to a tunnel; other
1xx are interim: told to the sink (`on_interim`, which relays them), except
100 Continue, which the gateway sends its client itself; Transfer-Encoding
chunked (with extensions and trailers, which llhttp consumes) or
Content-Length frame the body; without
either the body ends when the endpoint closes (close-delimited), which
`end_of_stream` turns into `CLOSE` rather than a failure.

Header lines: hop-by-hop ones are dropped as they arrive, and so are the
names the rule's response header modifier removes or sets (`drop`); the
others are kept as ready `Name: value\\r\\n` lines, so the client side joins
the response head without touching each header again.

`gateway.upstream.connection.UpstreamConnection` is the asyncio shell: it
derives from this class (mypyc compiles the pair into one native object per
connection: no second object, no extra call per event) and adds the
transport and the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Final, Protocol

import httptools

from gateway.hop_by_hop import HOP_BY_HOP, connection_tokens
from gateway.upstream.failure import UpstreamFailure, UpstreamProtocolError, UpstreamReset


class ResponseState(IntEnum):
    """Where the connection is in its request/response cycle."""

    IDLE = 0
    """No request outstanding (a fresh or reused connection)."""
    AWAIT = 1
    """A request was written; no final response head yet (1xx keep it here)."""
    BODY = 2
    """The final head was relayed; its body is being read."""
    TUNNEL = 3
    """101 Switching Protocols: bytes are opaque from here on."""
    CLOSED = 4
    """Ended: closed by either side, or unusable after a protocol error."""


class ResponseEvent(IntEnum):
    """What moves the connection from one state to another."""

    SEND = 0
    """The shell wrote a request (`start`)."""
    INTERIM = 1
    """A 1xx response other than 101."""
    HEAD = 2
    """A final response head whose body is to be read."""
    END = 3
    """The response ended (body framed to its end, or a head that has none)."""
    SWITCH = 4
    """A 101 response: the connection becomes a tunnel."""
    EOF = 5
    """The endpoint closed."""
    ERROR = 6
    """Unparsable bytes, or bytes the table allows in no state."""
    CLOSE = 7
    """The shell closed the connection."""


class ResponseAction(IntEnum):
    """What the shell must do after an input (0: nothing)."""

    NONE = 0
    REUSE = 1
    """Give the connection back to its pool, then report the response complete."""
    CLOSE = 2
    """Close the connection, then report the response complete."""
    FAIL = 3
    """Close the connection, then report `failure` to the sink."""


S, E = ResponseState, ResponseEvent

TRANSITIONS: Final[Mapping[tuple[ResponseState, ResponseEvent], ResponseState]] = {
    (S.IDLE, E.SEND): S.AWAIT,
    (S.IDLE, E.EOF): S.CLOSED,
    (S.IDLE, E.CLOSE): S.CLOSED,
    (S.IDLE, E.ERROR): S.CLOSED,
    (S.AWAIT, E.INTERIM): S.AWAIT,
    (S.AWAIT, E.HEAD): S.BODY,
    (S.AWAIT, E.END): S.IDLE,
    (S.AWAIT, E.SWITCH): S.TUNNEL,
    (S.AWAIT, E.EOF): S.CLOSED,
    (S.AWAIT, E.CLOSE): S.CLOSED,
    (S.AWAIT, E.ERROR): S.CLOSED,
    (S.BODY, E.END): S.IDLE,
    (S.BODY, E.EOF): S.CLOSED,
    (S.BODY, E.CLOSE): S.CLOSED,
    (S.BODY, E.ERROR): S.CLOSED,
    (S.TUNNEL, E.EOF): S.CLOSED,
    (S.TUNNEL, E.CLOSE): S.CLOSED,
    (S.CLOSED, E.EOF): S.CLOSED,
    (S.CLOSED, E.CLOSE): S.CLOSED,
    (S.CLOSED, E.ERROR): S.CLOSED,
}
"""The whole state machine. `END` from `BODY` or `AWAIT` leads to `IDLE` in the
table; the core then closes (`CLOSE`) a connection its response said not to keep."""

_EVENTS: Final = len(ResponseEvent)
_NEXT: Final[tuple[int, ...]] = tuple(
    int(TRANSITIONS.get((state, event), -1)) for state in ResponseState for event in ResponseEvent
)
"""`TRANSITIONS` flattened to `state * _EVENTS + event` (-1: not allowed), as the core
reads it per event."""

_IDLE: Final = int(ResponseState.IDLE)
_AWAIT: Final = int(ResponseState.AWAIT)
_BODY: Final = int(ResponseState.BODY)
_TUNNEL: Final = int(ResponseState.TUNNEL)
_CLOSED: Final = int(ResponseState.CLOSED)
_SEND: Final = int(ResponseEvent.SEND)
_INTERIM: Final = int(ResponseEvent.INTERIM)
_HEAD: Final = int(ResponseEvent.HEAD)
_END: Final = int(ResponseEvent.END)
_SWITCH: Final = int(ResponseEvent.SWITCH)
_EOF: Final = int(ResponseEvent.EOF)
_ERROR: Final = int(ResponseEvent.ERROR)
_CLOSE: Final = int(ResponseEvent.CLOSE)
_NONE: Final = int(ResponseAction.NONE)
_REUSE: Final = int(ResponseAction.REUSE)
_CLOSE_ACTION: Final = int(ResponseAction.CLOSE)
_FAIL: Final = int(ResponseAction.FAIL)


class ResponseSink(Protocol):
    """What an upstream connection reports to while it serves one request."""

    def on_response_head(self, head: ResponseCore, status: int) -> None:
        """A final response head: `head.lines`, `head.has_length`, `head.upgrade` describe it."""
        ...

    def on_interim(self, head: ResponseCore, status: int) -> None:
        """An interim response other than 100 and 101 (103 Early Hints, say): `head.lines`."""
        ...

    def on_response_body(self, data: bytes) -> None: ...
    def on_response_complete(self) -> None: ...
    def upstream_failed(self, failure: UpstreamFailure) -> None: ...
    def tunnel_data(self, data: bytes) -> None: ...
    def flush_head(self) -> None: ...
    def upstream_pause_writing(self) -> None: ...
    def upstream_resume_writing(self) -> None: ...


_PLAIN_CONNECTION: Final = frozenset({b"keep-alive", b"close", b"upgrade"})
"""Connection values naming only hop-by-hop headers, which are dropped anyway."""

_LOWER_PLAIN: Final = frozenset(
    {
        b"server",
        b"date",
        b"content-type",
        b"cache-control",
        b"last-modified",
        b"etag",
        b"expires",
        b"vary",
        b"set-cookie",
        b"location",
        b"accept-ranges",
        b"content-encoding",
        b"content-length",
    }
)
"""`_PLAIN_NAMES` and Content-Length, lowercased: a drop set naming none of them
costs nothing on their fast path (`drop_names`)."""

_PLAIN_NAMES: Final = frozenset(
    {
        b"Server",
        b"Date",
        b"Content-Type",
        b"Cache-Control",
        b"Last-Modified",
        b"ETag",
        b"Expires",
        b"Vary",
        b"Set-Cookie",
        b"Location",
        b"Accept-Ranges",
        b"Content-Encoding",
    }
)
"""Header names, exactly as usually spelled, that are forwarded as they are: no
lowercasing or hop-by-hop check for them (not Content-Length, which is read)."""


class ResponseCore:
    """The parser and framing state of one upstream connection; see the module docstring."""

    __slots__ = (
        "action",
        "chunked",
        "drop",
        "drop_plain",
        "dropped",
        "failure",
        "feed",
        "has_length",
        "head_only",
        "keep_alive",
        "lines",
        "parser",
        "sink",
        "state",
        "status",
        "upgrade",
        "upgrade_asked",
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.feed: Callable[[bytes], None] = self.parser.feed_data
        self.sink: ResponseSink | None = None
        self.state = _IDLE
        self.action = _NONE
        """What the current input asks of the shell (`receive` returns it)."""
        self.failure: UpstreamFailure | None = None
        """Why, when `action` is `FAIL`."""
        self.lines: list[bytes] = []
        self.drop: frozenset[bytes] = frozenset()
        """Lowercased names not to keep (the rule's response header modifier), set at `start`."""
        self.drop_plain = False
        """Whether `drop` names a header of the `_PLAIN_NAMES` fast path (rare)."""
        self.dropped: frozenset[bytes] | None = None
        self.upgrade = b""
        self.status = 0
        self.chunked = False
        self.has_length = False
        """A Content-Length came (llhttp has validated it): the body is length-delimited."""
        self.keep_alive = True
        self.head_only = False
        self.upgrade_asked = False

    def _to(self, event: int) -> bool:
        """Take `event` by the table; False (and CLOSED) when the table does not allow it."""
        nxt = _NEXT[self.state * _EVENTS + event]
        if nxt < 0:
            self.state = _CLOSED
            return False
        self.state = nxt
        return True

    # --- inputs --------------------------------------------------------------
    def start(
        self,
        sink: ResponseSink,
        *,
        head_only: bool,
        drop: frozenset[bytes] = frozenset(),
        upgrade: bool = False,
    ) -> None:
        """A request was written for `sink`; `head_only`: it was a HEAD request;
        `drop`: response header names its rule removes or sets (lowercased);
        `upgrade`: it asked for a protocol upgrade (only then may the answer be 101)."""
        self.sink = sink
        self.head_only = head_only
        self.upgrade_asked = upgrade
        self.action = _NONE
        if drop is not self.drop:
            self.drop_names(drop)
        self._to(_SEND)

    def receive(self, data: bytes) -> int:
        """Bytes from the endpoint; returns a `ResponseAction`."""
        self.action = _NONE
        if self.state == _TUNNEL:
            if self.sink is not None:
                self.sink.tunnel_data(data)
            return _NONE
        try:
            self.feed(data)
        except httptools.HttpParserUpgrade as upgrade:
            rest = data[upgrade.args[0] :]
            if rest and self.state == _TUNNEL and self.sink is not None:
                self.sink.tunnel_data(rest)
            return self.action
        except httptools.HttpParserError:
            return self._fail(UpstreamProtocolError("unparsable response"))
        action = self.action
        if action:
            return action
        if self.sink is not None:
            self.sink.flush_head()
        return _NONE

    def end_of_stream(self) -> int:
        """The endpoint closed: a close-delimited body (or a tunnel) ends here, else
        a response in progress failed (`FAIL`); `NONE` when none was outstanding."""
        state = self.state
        self._to(_EOF)
        if state == _TUNNEL or (state == _BODY and not self.chunked and not self.has_length):
            self.action = _CLOSE_ACTION
            return _CLOSE_ACTION
        if state in (_AWAIT, _BODY):
            self.failure = UpstreamReset("closed before the response ended")
            self.action = _FAIL
            return _FAIL
        return _NONE

    def closed_by_shell(self) -> None:
        """The shell closed the connection: nothing more is reported to any sink."""
        self.sink = None
        self._to(_CLOSE)

    def _fail(self, failure: UpstreamFailure) -> int:
        self._to(_ERROR)
        self.failure = failure
        self.action = _FAIL
        return _FAIL

    def drop_names(self, drop: frozenset[bytes]) -> None:
        """Leave out of the next responses the header names in `drop` (lowercased)."""
        self.drop = drop
        self.drop_plain = not drop.isdisjoint(_LOWER_PLAIN)

    # --- httptools callbacks ---------------------------------------------------
    def on_message_begin(self) -> None:
        self.lines = []
        if self.dropped is not None:
            self.dropped = None
        if self.upgrade:
            self.upgrade = b""
        self.chunked = False
        self.has_length = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name in _PLAIN_NAMES:  # common end-to-end headers as servers spell them
            if not self.drop_plain or name.lower() not in self.drop:
                self.lines.append(name + b": " + value + b"\r\n")
            return
        if name == b"Content-Length":
            self.has_length = True
            self.lines.append(name + b": " + value + b"\r\n")
            return
        if name == b"Connection" and value == b"keep-alive":
            return  # hop-by-hop, names no other header
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"transfer-encoding":
                self.chunked = value.strip().lower().endswith(b"chunked")
            elif lname == b"connection":
                if value.lower() not in _PLAIN_CONNECTION:
                    tokens = frozenset(connection_tokens(value)) - HOP_BY_HOP
                    self.dropped = (self.dropped or frozenset()) | tokens
            elif lname == b"upgrade":
                self.upgrade = value
            return
        if lname == b"content-length":
            self.has_length = True
        elif lname in self.drop:
            return
        self.lines.append(name + b": " + value + b"\r\n")

    def head_lines(self) -> list[bytes]:
        """The response's end-to-end header lines, minus what its Connection header named
        (known only once the head is complete; `lines` when it named nothing)."""
        if not self.dropped:
            return self.lines
        drop = self.dropped - {b"content-length"}
        return [line for line in self.lines if line[: line.index(b":")].lower() not in drop]

    def on_headers_complete(self) -> None:
        status: int = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            if not self._to(_INTERIM):
                self._fail(UpstreamProtocolError("response without a request"))
            elif status != 100 and self.sink is not None:
                self.sink.on_interim(self, status)
            return
        if status == 101 and not self.upgrade_asked:  # RFC 9110 15.2.2: nothing to switch to
            self._fail(UpstreamProtocolError("101 to a request without Upgrade"))
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        if not self._to(_SWITCH if status == 101 else _HEAD):
            self._fail(UpstreamProtocolError("response without a request"))
            return
        sink = self.sink
        if sink is not None:
            sink.on_response_head(self, status)
        if self.head_only and status != 101:
            # The response to HEAD ended at its head; llhttp would read a body for
            # its Content-Length, so this connection cannot be parsed further.
            self._to(_END)
            self._to(_CLOSE)
            self.action = _CLOSE_ACTION

    def on_body(self, body: bytes) -> None:
        if self.state == _BODY and self.sink is not None:
            self.sink.on_response_body(body)

    def on_message_complete(self) -> None:
        if self.state != _BODY:
            return  # an interim response, a switch, or a HEAD response already ended
        self._to(_END)
        if self.keep_alive:
            self.action = _REUSE
        else:
            self._to(_CLOSE)
            self.action = _CLOSE_ACTION


del S, E
