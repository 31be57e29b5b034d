"""The client side of an HTTP/1.1 connection, without I/O: request bytes in, actions out.

Theory of operation. `RequestCore` owns the httptools (llhttp) request
parser, the strict head rules of `http.head` and RFC 9112's request framing
for one client connection; it never touches a socket. Its input is
`receive(data)` (plus two events from the shell: `switched`, when the
upstream accepted an upgrade, and `closed`). A complete head becomes an
`Exchange`; its body bytes are held in `Exchange.body` as they arrive. What
the shell must do after a read comes back as `ClientAction` bits (a small
int, nothing allocated per event), in the order the shell acts on them:

* `FLUSH`: the active exchange is bound to an upstream connection and has
  body bytes (or its last chunk) to send there;
* `START`: a request became active (`ready`): route it and forward its head;
* `REFUSE`: the bytes broke a rule (`refused` is the `HeadError`): answer it
  and close, after the requests read whole before it are answered (they
  come with `FLUSH` and `START` as usual; a request whose own body is
  malformed comes with neither: no part of it may reach an upstream whole).

Reading is paused and resumed through `paused`, a bitmask of reasons
(`http.exchange`: `PIPELINE`, `BUFFER`, `TUNNEL_WAIT`, `DONE`, and the
shell's `UPSTREAM`): the core adds the reasons it finds (a second request
while one is answered, a full early-body buffer, an upgrade waiting for its
101, a `Connection: close` request read to its end), the shell pauses the
transport when `paused` turns non-zero and drops reasons as they clear.

Pipelining: requests are read as they come (llhttp parses a whole read at
once), answered one at a time in order: the first is `active`, the others
wait in `queue` with their early body bytes while reading stays paused; the
shell starts the next when the active one's response completes.

`ClientState` is where the reading side of the connection is, and every
change goes through `TRANSITIONS`, a table of (state, event) -> state kept as
data: IDLE (between requests) -> HEAD (a head is arriving) -> BODY (its body,
framed by Content-Length, chunked with extensions and trailers, or none: a
request never has a close-delimited body, so an HTTP/1.0 request without
Content-Length has none) -> IDLE again, or CLOSED after a request that ends
the connection (`Connection: close`, HTTP/1.0 without keep-alive), or
UPGRADE (an Upgrade request: bytes after it are held) -> TUNNEL once the
shell relayed a 101. Any refusal leads to CLOSED.

`http.request.RequestReader` and the rest of the proxy's chain derive from
this class: mypyc compiles the chain into one native object per client
connection (the parser's callbacks are native method calls of that object).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from enum import IntEnum, IntFlag
from typing import Final

import httptools

from gateway.hop_by_hop import connection_tokens
from gateway.http import field_roles as fr
from gateway.http import head as hh
from gateway.http.exchange import BODY_BUFFER_LIMIT, BUFFER, DONE, PIPELINE, TUNNEL_WAIT, Exchange


class ClientState(IntEnum):
    """Where the reading side of a client connection is."""

    IDLE = 0
    """Between requests: nothing of the next head has come."""
    HEAD = 1
    """A request head is arriving."""
    BODY = 2
    """The head is complete; its body (if any) is arriving."""
    UPGRADE = 3
    """An Upgrade request was read; what follows is held until the upstream answers."""
    TUNNEL = 4
    """The upstream switched protocols: bytes are opaque, relayed by the shell."""
    CLOSED = 5
    """Nothing more is read: refused, ended by a closing request, or closed."""


class ClientEvent(IntEnum):
    """What moves a client connection from one state to another."""

    BEGIN = 0
    """The first byte of a request head."""
    HEAD = 1
    """A complete, accepted request head."""
    END = 2
    """The request ended (its body framed to its end); the connection stays open."""
    LAST = 3
    """The request ended and was the connection's last (close, HTTP/1.0)."""
    UPGRADE = 4
    """The head asked for an Upgrade that llhttp accepted."""
    SWITCH = 5
    """The shell relayed the upstream's 101."""
    ERROR = 6
    """Bytes that break a rule."""
    CLOSE = 7
    """The shell closed, or the client did."""


class ClientAction(IntFlag):
    """What `RequestCore.receive` asks of the shell (bits; 0: nothing)."""

    FLUSH = 1
    """Send the active exchange's held body bytes (and last chunk) to its upstream."""
    START = 2
    """Start `ready`: route it and forward its head."""
    REFUSE = 4
    """Answer `refused` and close."""


S, E = ClientState, ClientEvent

TRANSITIONS: Final[Mapping[tuple[ClientState, ClientEvent], ClientState]] = {
    (S.IDLE, E.BEGIN): S.HEAD,
    (S.IDLE, E.ERROR): S.CLOSED,
    (S.IDLE, E.CLOSE): S.CLOSED,
    (S.HEAD, E.HEAD): S.BODY,
    (S.HEAD, E.ERROR): S.CLOSED,
    (S.HEAD, E.CLOSE): S.CLOSED,
    (S.BODY, E.END): S.IDLE,
    (S.BODY, E.LAST): S.CLOSED,
    (S.BODY, E.UPGRADE): S.UPGRADE,
    (S.BODY, E.ERROR): S.CLOSED,
    (S.BODY, E.CLOSE): S.CLOSED,
    (S.UPGRADE, E.SWITCH): S.TUNNEL,
    (S.UPGRADE, E.CLOSE): S.CLOSED,
    (S.TUNNEL, E.CLOSE): S.CLOSED,
    (S.CLOSED, E.ERROR): S.CLOSED,
    (S.CLOSED, E.CLOSE): S.CLOSED,
}
"""The whole state machine of the reading side; an event it does not list is refused
(a request after the one that closed the connection, say)."""

_EVENTS: Final = len(ClientEvent)
_NEXT: Final[tuple[int, ...]] = tuple(
    int(TRANSITIONS.get((state, event), -1)) for state in ClientState for event in ClientEvent
)
"""`TRANSITIONS` flattened to `state * _EVENTS + event` (-1: not allowed), read per event."""

_IN_BODY: Final = int(ClientState.BODY)
_IDLE: Final = int(ClientState.IDLE)
_TUNNEL: Final = int(ClientState.TUNNEL)
_CLOSED: Final = int(ClientState.CLOSED)
_BEGIN: Final = int(ClientEvent.BEGIN)
_HEAD: Final = int(ClientEvent.HEAD)
_END: Final = int(ClientEvent.END)
_LAST: Final = int(ClientEvent.LAST)
_UPGRADE: Final = int(ClientEvent.UPGRADE)
_ERROR: Final = int(ClientEvent.ERROR)
FLUSH: Final = int(ClientAction.FLUSH)
START: Final = int(ClientAction.START)
REFUSE: Final = int(ClientAction.REFUSE)
"""`ClientAction`'s bits as plain ints, as compiled code tests them."""


class RequestCore:
    """The reading side of one client connection; see the module docstring."""

    __slots__ = (
        "actions",
        "active",
        "body_limit",
        "clen",
        "closing",
        "conn_tokens",
        "expect",
        "feed",
        "fwd",
        "hbytes",
        "headers",
        "host",
        "host_count",
        "max_header_bytes",
        "max_headers",
        "max_line",
        "nheaders",
        "origin",
        "parser",
        "parsing",
        "paused",
        "queue",
        "rare",
        "ready",
        "refused",
        "request_id",
        "state",
        "te",
        "traced",
        "trusted",
        "upgrade",
        "url",
        "valid_host",
    )

    def __init__(self, *, max_line: int, max_headers: int, max_header_bytes: int) -> None:
        self.max_line = max_line
        """Request-target bytes accepted (`maxRequestLineBytes`): 414 past it."""
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        """Header fields and bytes accepted (`maxHeaders`, `maxHeaderBytes`): 431 past either."""
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.feed: Callable[[bytes], None] | None = self.parser.feed_data
        """The parser and its bound `feed_data`; None while `shed` (made again on the next read)."""
        self.state = 0
        self.actions = 0
        """The `ClientAction` bits of the read being parsed."""
        self.paused = 0
        """Why reading is paused: a bitmask of `http.exchange`'s reasons, 0 when reading."""
        self.trusted = False
        """Whether forwarding headers from this client are believed (set by the shell)."""
        self.closing = False
        """Whether the connection ends after the requests read so far."""
        self.active: Exchange | None = None
        """The exchange being answered."""
        self.parsing: Exchange | None = None
        """The exchange whose body is being read (None between requests)."""
        self.queue: deque[Exchange] | None = None
        """Exchanges read whole or in part, waiting for `active` to be answered."""
        self.ready: Exchange | None = None
        """An exchange that became active in this read: the shell starts it (`START`)."""
        self.refused: hh.HeadError | None = None
        """Why, when `receive` returned `REFUSE`."""
        self.rare = True
        """Whether a header other than Host and plain ones set head state (`_reset_head`)."""
        self.body_limit = -1
        """The listener's request body limit (`maxRequestBodyBytes`), -1 when none."""
        self.valid_host = b""
        """The last Host value checked on this connection (clients repeat theirs)."""
        self._reset_head()

    def _to(self, event: int) -> None:
        nxt = _NEXT[self.state * _EVENTS + event]
        if nxt < 0:
            self.state = _CLOSED
            raise hh.HeadError(400, "unexpected_request")
        self.state = nxt

    # --- inputs --------------------------------------------------------------
    def receive(self, data: bytes) -> int:
        """Parse a read of the client's bytes; returns `ClientAction` bits."""
        if self.paused & DONE or self.state == _CLOSED:
            return 0  # finished or refused: what the client still sends is discarded
        self.actions = 0
        feed = self.feed
        if feed is None:
            feed = self._new_parser()
        try:
            feed(data)
        except httptools.HttpParserUpgrade as upgrade:
            ex = self.parsing
            if ex is not None:
                rest = data[upgrade.args[0] :]
                if rest:
                    ex.buffer(rest)
                ex.body_done = True
                self.paused |= TUNNEL_WAIT
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if not isinstance(cause, hh.HeadError):
                raise
            return self._refusal(cause)
        except httptools.HttpParserError as exc:
            assert self.parser is not None
            version: str = self.parser.get_http_version()
            return self._refusal(hh.parser_error_status(str(exc), self.te, version))
        if self.ready is not None:
            return self.actions | START
        return self.actions

    def shed(self) -> bool:
        """Drop the parser while the connection is idle between requests (no byte of a
        next request read): with its bound callbacks it is about 1 KiB, a third of an
        idle keep-alive connection. The next read makes a new one (~2 us). False, and
        nothing dropped, unless idle."""
        if self.state != _IDLE or self.active is not None or self.queue or self.parser is None:
            return False
        self.parser = None
        self.feed = None
        return True

    def _new_parser(self) -> Callable[[bytes], None]:
        parser = self.parser = httptools.HttpRequestParser(self)
        feed = self.feed = parser.feed_data
        return feed

    def next_request(self) -> Exchange | None:
        """The active exchange was answered: the next pipelined one becomes active
        (the shell starts it; it drops `PIPELINE` once `queue` is empty)."""
        queue = self.queue
        nxt = queue.popleft() if queue else None
        self.active = nxt
        return nxt

    def switched(self) -> None:
        """The upstream switched protocols (101 relayed): bytes are the tunnel's now.

        From UPGRADE by the table (a 101 to a request without Upgrade is the endpoint's
        protocol error, never relayed: `ResponseCore`)."""
        self.parsing = None
        self.state = _TUNNEL

    def closed(self) -> None:
        """The connection is closing: nothing more is read."""
        self.paused |= DONE
        self.state = _CLOSED  # every state goes there on CLOSE (`TRANSITIONS`)

    def _refusal(self, err: hh.HeadError) -> int:
        """Refuse the rest of the connection; a request read whole before the bad
        bytes is still flushed and started (it is answered first, in order)."""
        if self.paused & DONE:
            # bytes after the connection's last request (RFC 9112 9.6: not processed),
            # discarded as they are when they come in a later read
            return self.actions | (START if self.ready is not None else 0)
        self.state = _CLOSED
        self.refused = err
        active = self.active
        if active is None or active is self.parsing:
            return REFUSE  # its own body is malformed: nothing of it is forwarded whole
        return REFUSE | (self.actions & FLUSH) | (START if self.ready is not None else 0)

    # --- httptools callbacks ---------------------------------------------------
    def on_message_begin(self) -> None:
        self._to(_BEGIN)
        self._reset_head()

    def _reset_head(self) -> None:
        """Forget the last head (also run once by `__init__`)."""
        self.url = b""
        self.headers: hh.Headers = []
        self.nheaders = 0
        self.hbytes = 0
        self.host: bytes | None = None
        self.host_count = 0
        if not self.rare:
            return  # no header but Host and plain ones came: the rest is still reset
        self.rare = False
        self.te: bytes | None = None
        self.conn_tokens: list[bytes] | None = None
        self.upgrade = b""
        self.fwd: dict[bytes, bytes] | None = None
        self.expect = False
        self.request_id = b""
        self.traced = False
        self.clen: bytes | None = None
        self.origin = b""

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.max_line:
            raise hh.HeadError(414, "request_line_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.state == _IN_BODY:
            # a trailer field of a chunked body: never merged into the forwarded head
            # (RFC 9110 6.5.1); the body goes upstream re-chunked, without trailers
            return
        self.nheaders += 1
        self.hbytes += len(name) + len(value) + 4
        if self.nheaders > self.max_headers or self.hbytes > self.max_header_bytes:
            raise hh.HeadError(431, "request_headers_too_large")
        kind = fr.BY_NAME.get(name)
        if kind is None:
            lname = name.lower()
            kind = fr.BY_LOWER_NAME.get(lname)
            if kind is None:
                if not lname.startswith(b"proxy-"):
                    self.headers.append((name, value))
                return
        if kind == fr.PLAIN:
            self.headers.append((name, value))
            return
        if kind == fr.HOST:
            self.host_count += 1
            self.host = value
            return
        self.rare = True
        if kind == fr.CONTENT_LENGTH:
            self.clen = value
            self.headers.append((name, value))
        elif kind == fr.TRANSFER_ENCODING:
            self.te = value
            hh.check_transfer_encoding(value)
        elif kind == fr.CONNECTION:
            self.conn_tokens = (self.conn_tokens or []) + connection_tokens(value)
        elif kind == fr.UPGRADE:
            self.upgrade = value
        elif kind in (fr.FORWARDING, fr.FORWARDED_FOR):
            if self.trusted:
                lname = name.lower()
                fwd = self.fwd if self.fwd is not None else {}
                old = fwd.get(lname)
                fwd[lname] = old + b", " + value if old else value
                self.fwd = fwd
        elif kind == fr.EXPECT:
            if value.strip().lower() != b"100-continue":
                raise hh.HeadError(417, "expectation_failed")  # RFC 9110 10.1.1 MAY
            self.expect = True
        elif kind == fr.REQUEST_ID:
            self.request_id = value
            self.headers.append((name, value))
        elif kind == fr.TRACEPARENT:
            self.traced = True
            self.headers.append((name, value))
        elif kind == fr.ORIGIN:
            self.origin = value  # CORS reads it (`Exchange.origin`): no header scan
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        assert parser is not None
        keep_alive: bool = parser.should_keep_alive()
        if keep_alive and self.conn_tokens is None:
            # llhttp accepts only versions 0.9, 1.0, 1.1 and 2.0, and keeps a
            # connection alive by default only for 1.1 (the others need
            # `Connection: keep-alive`): so this is 1.1, and the parser's
            # get_http_version (~0.3 µs: it formats a string) is not needed
            version = "1.1"
        else:
            version = parser.get_http_version()
            if version != "1.1":
                hh.check_version(version)
                if self.te is not None:  # RFC 9112 6.1: faulty framing in HTTP/1.0
                    raise hh.HeadError(400, "transfer_encoding_in_http_1_0")
        method: bytes = parser.get_method()
        if method == b"CONNECT":
            raise hh.HeadError(501, "connect_not_supported")
        url = self.url
        # a fragment is not part of any request-target form; `find`, not `in`: bytes'
        # `in` first tries its operand as an int, raising and clearing a TypeError
        if url.find(b"#") >= 0:
            raise hh.HeadError(400, "bad_request_target")
        if url[:1] == b"/":  # origin-form, nearly every request
            authority = b""
            path, _, query = url.partition(b"?")
        else:
            if url == b"*" and method != b"OPTIONS":  # asterisk-form is OPTIONS only
                raise hh.HeadError(400, "bad_request_target")
            authority, path, query = hh.split_target(url)
        if authority:
            host = authority
        elif self.host_count == 1 and self.host:
            host = self.host
        elif self.host_count > 1 or version == "1.1":
            raise hh.HeadError(400, "missing_or_repeated_host")
        else:
            host = b""
        if host != self.valid_host:
            hh.check_host(host)
            self.valid_host = host
        headers = self.headers
        if self.conn_tokens:
            # a Connection header cannot make the framing disappear upstream
            gone = frozenset(self.conn_tokens) - {b"content-length"}
            headers = [(n, v) for n, v in headers if n.lower() not in gone]
        upgrade = self.upgrade if self.upgrade and parser.should_upgrade() else b""
        chunked = self.te is not None
        has_body = chunked or (self.clen is not None and self.clen != b"0")
        ex = Exchange(method, path, query, version, host, headers, self.request_id, self.fwd)
        if self.clen is not None:
            ex.content_length = int(self.clen)  # llhttp accepted it: digits only
        limit = self.body_limit
        if limit >= 0:
            if ex.content_length > limit:
                raise hh.HeadError(413, "request_body_too_large")
            ex.body_limit = limit
        ex.traced = self.traced
        if self.origin:
            ex.origin = self.origin
        ex.keep_alive = keep_alive and not self.closing
        ex.chunked = chunked
        ex.body_done = not has_body
        ex.upgrade = upgrade
        ex.expect = self.expect and has_body and version == "1.1"  # 1.0: MUST ignore
        if not ex.keep_alive:
            self.closing = True
        self.parsing = ex
        self._to(_HEAD)
        if self.active is None:
            # started once this read is parsed whole: a request whose body turns out
            # malformed in the same read is refused before anything is forwarded
            self.active = ex
            self.ready = ex
        else:
            if self.queue is None:
                self.queue = deque()
            self.queue.append(ex)
            self.paused |= PIPELINE

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None or ex.done:
            return
        ex.bytes_in += len(body)
        if ex.bytes_in > ex.body_limit >= 0:
            raise hh.HeadError(413, "request_body_too_large")
        held = ex.buffer(body)
        if ex is self.active and ex.conn is not None:
            self.actions |= FLUSH
        elif held > BODY_BUFFER_LIMIT:
            self.paused |= BUFFER

    def on_message_complete(self) -> None:
        ex = self.parsing
        if ex is None:
            return
        if ex.upgrade:
            self._to(_UPGRADE)  # `receive` holds what follows until the switch
            return
        self.parsing = None
        ex.body_done = True
        if ex is self.active and ex.conn is not None and ex.chunked:
            self.actions |= FLUSH  # the last chunk
        if self.closing:
            self._to(_LAST)
            self.paused |= DONE
        else:
            self._to(_END)


del S, E
