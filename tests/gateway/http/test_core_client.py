"""The client request core with plain bytes: RFC 9112 request framing, no sockets."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.http.core_client import (
    FLUSH,
    REFUSE,
    START,
    TRANSITIONS,
    ClientEvent,
    ClientState,
    RequestCore,
)
from gateway.http.exchange import DONE, PIPELINE, TUNNEL_WAIT, Exchange
from gateway.upstream.connection import UpstreamConnection

Action = tuple[object, ...]


class Pool:
    host_header = b"up"

    def release(self, conn: UpstreamConnection) -> None: ...
    def forget(self, conn: UpstreamConnection) -> None: ...


class Transport:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def writelines(self, data: list[bytes]) -> None:
        self.data += b"".join(data)


class Shell:
    """What the proxy shell does with the core's actions, written down instead of sent.

    A started request is bound at once to an upstream connection whose
    transport records the body bytes flushed to it (as `TryRunner._bind` does:
    held bytes go out with the head)."""

    def __init__(self, *, bind: bool = True, body_limit: int = -1) -> None:
        self.core = RequestCore(max_line=200, max_headers=20, max_header_bytes=2000)
        self.core.body_limit = body_limit
        self.bind = bind
        self.actions: list[Action] = []
        self.upstream: dict[int, Transport] = {}
        self.starts: dict[int, int] = {}
        """Where each exchange's start is in `actions`, by id."""

    def receive(self, data: bytes) -> None:
        core = self.core
        actions = core.receive(data)
        if actions & FLUSH:
            self._flush(core.active)
        if actions & START:
            ex = core.ready
            core.ready = None
            assert ex is not None and ex is core.active
            self._start(ex)
        if actions & REFUSE:
            err = core.refused
            assert err is not None
            own = core.active
            if own is not None and own is core.parsing and id(own) in self.upstream:
                # its own body is malformed: the proxy drops the upstream it started on
                # (a complete request never reaches it) and answers the refusal instead
                del self.upstream[id(own)]
                self.actions.pop(self.starts.pop(id(own)))
            self.actions.append(("refuse", err.status, err.cause))

    def answered(self) -> None:
        """The active request's response completed."""
        nxt = self.core.next_request()
        if nxt is not None:
            if not self.core.queue:
                self.core.paused &= ~PIPELINE
            self._start(nxt)

    def _start(self, ex: Exchange) -> None:
        self.starts[id(ex)] = len(self.actions)
        self.actions.append(
            (
                "start",
                ex.method,
                ex.path,
                ex.query,
                ex.version,
                ex.host,
                tuple(ex.headers),
                ex.content_length,
                ex.chunked,
                ex.keep_alive,
                ex.upgrade,
                ex.expect,
            )
        )
        if self.bind:
            conn = UpstreamConnection(Pool())
            transport = Transport()
            conn.transport = transport  # type: ignore[assignment]
            ex.conn = conn
            self.upstream[id(ex)] = transport
            body = ex.body or []
            ex.body = None
            transport.write(b"".join(_chunks(body) if ex.chunked else body))
            if ex.chunked and ex.body_done and not ex.upgrade:
                transport.write(b"0\r\n\r\n")

    def _flush(self, ex: Exchange | None) -> None:
        assert ex is not None and ex.conn is not None
        transport = self.upstream[id(ex)]
        body = ex.body or []
        ex.body = None
        transport.write(b"".join(_chunks(body) if ex.chunked else body))
        if ex.chunked and ex.body_done and not ex.upgrade:
            transport.write(b"0\r\n\r\n")

    def sent(self) -> list[bytes]:
        """What each started request sent upstream, in order."""
        return [t.data for t in self.upstream.values()]


def _chunks(body: list[bytes]) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in body]


def run(reads: list[bytes], **kw: int | bool) -> Shell:
    shell = Shell(**kw)  # type: ignore[arg-type]
    for data in reads:
        shell.receive(data)
    return shell


GET = b"GET /a?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"


def test_a_get_starts_at_once_and_leaves_the_connection_idle() -> None:
    shell = run([GET])
    assert shell.actions == [
        (
            "start",
            b"GET",
            b"/a",
            b"q=1",
            "1.1",
            b"example.com",
            ((b"Accept", b"*/*"),),
            -1,
            False,
            True,
            b"",
            False,
        )
    ]
    assert shell.core.state == ClientState.IDLE
    assert shell.core.paused == 0


def test_content_length_body_goes_upstream() -> None:
    shell = run([b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello", b" world"])
    assert shell.actions[0][7] == 11
    assert shell.sent() == [b"hello world"]
    assert shell.core.state == ClientState.IDLE


def test_chunked_body_with_extensions_and_trailers_is_rechunked() -> None:
    shell = run(
        [
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        ]
    )
    assert shell.actions[0][8] is True
    assert shell.sent() == [b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"]


def test_trailers_are_never_merged_into_the_forwarded_head() -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    tail = b"1\r\na\r\n0\r\nX-Smuggled: 1\r\nHost: evil\r\n\r\n"
    for reads in ([head + tail], [head, tail]):
        shell = run(reads)
        assert shell.actions[0][5] == b"h" and shell.actions[0][6] == ()
        assert shell.core.state == ClientState.IDLE


def test_http_1_0_request_without_content_length_has_no_body_and_closes() -> None:
    shell = run([b"GET / HTTP/1.0\r\n\r\n"])
    (start,) = shell.actions
    assert start[4] == "1.0" and start[9] is False  # not kept alive
    assert shell.core.state == ClientState.CLOSED
    assert shell.core.paused & DONE
    assert shell.sent() == [b""]


def test_http_1_0_keep_alive_body_by_content_length() -> None:
    shell = run([b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok" + GET])
    assert [a[4] for a in shell.actions] == ["1.0"]
    shell.answered()
    assert [a[4] for a in shell.actions] == ["1.0", "1.1"]


def test_pipelined_requests_wait_for_the_active_response() -> None:
    second = b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    shell = run([GET + second])
    assert [a[2] for a in shell.actions] == [b"/a"]
    assert shell.core.paused & PIPELINE
    queued = shell.core.queue
    assert queued is not None and queued[0].body == [b"abc"]  # held, not sent
    shell.answered()
    assert [a[2] for a in shell.actions] == [b"/a", b"/b"]
    assert shell.sent() == [b"", b"abc"]
    assert shell.core.paused == 0


def test_connection_close_ends_reading() -> None:
    shell = run([b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"])
    assert shell.actions[0][9] is False
    assert shell.core.state == ClientState.CLOSED
    shell.receive(GET)  # discarded
    assert len(shell.actions) == 1


def test_expect_100_continue_is_noted_for_a_body() -> None:
    shell = run([b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"])
    assert shell.actions[0][11] is True
    assert shell.core.state == ClientState.BODY


def test_upgrade_holds_the_bytes_after_it_until_the_switch() -> None:
    shell = run(
        [
            b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            b"early frame"
        ],
        bind=False,
    )
    assert shell.actions[0][10] == b"websocket"
    core = shell.core
    assert core.state == ClientState.UPGRADE
    assert core.paused & TUNNEL_WAIT
    assert core.active is not None and core.active.body == [b"early frame"]
    core.switched()
    assert core.state == ClientState.TUNNEL


def test_body_held_past_the_buffer_limit_pauses_reading() -> None:
    shell = run(
        [b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" + b"x" * 70000],
        bind=False,
    )
    assert shell.core.paused & 4  # BUFFER


REFUSALS = [
    (b"GET / HTTP/1.1\r\n\r\n", 400, "missing_or_repeated_host"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "missing_or_repeated_host"),
    (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414, "request_line_too_long"),
    (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: y\r\n" * 30 + b"\r\n", 431, None),
    (b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 501, "connect_not_supported"),
    (b"GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bad_request_target"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n", 417, "expectation_failed"),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, None),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501, None),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, None),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, None),
    (b"GET / HTTP/1.1\r\nHost: h\r\n bad fold\r\n\r\n", 400, None),
    (b"GET / HTTP/2.5\r\nHost: h\r\n\r\n", None, None),
]


def test_each_rule_broken_is_a_refusal_that_closes() -> None:
    for data, status, cause in REFUSALS:
        shell = run([data])
        kind, got_status, got_cause = shell.actions[-1]
        assert kind == "refuse", data
        if status is not None:
            assert got_status == status, data
        if cause is not None:
            assert got_cause == cause, data
        assert shell.core.state == ClientState.CLOSED


def test_body_over_the_limit_is_refused() -> None:
    shell = run(
        [b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n123456789\r\n"],
        body_limit=4,
    )
    assert shell.actions[-1] == ("refuse", 413, "request_body_too_large")


def test_transition_table_is_closed_and_every_state_can_close() -> None:
    for (state, event), nxt in TRANSITIONS.items():
        assert isinstance(state, ClientState) and isinstance(event, ClientEvent)
        assert isinstance(nxt, ClientState)
    for state in ClientState:
        assert TRANSITIONS[(state, ClientEvent.CLOSE)] == ClientState.CLOSED
    assert (ClientState.CLOSED, ClientEvent.BEGIN) not in TRANSITIONS


STREAMS = [
    GET + GET,
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world" + GET,
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n" + GET,
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" + GET,
    GET + b"GET / HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nqq\r\n",
]


def dechunked(data: bytes) -> bytes:
    """A re-chunked body as its payload and terminator (chunk sizes follow the reads)."""
    out, rest = b"", data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out + b"<end>" + rest
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def normalised(shell: Shell) -> tuple[object, ...]:
    for _ in range(4):  # answer whatever is pipelined
        shell.answered()
    chunked = [a[8] for a in shell.actions if a[0] == "start"]
    sent = [dechunked(d) if c else d for d, c in zip(shell.sent(), chunked, strict=True)]
    return (tuple(shell.actions), tuple(sent), shell.core.state)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(STREAMS), st.lists(st.integers(min_value=0, max_value=300), max_size=12))
def test_any_split_of_the_stream_gives_the_same_actions(whole: bytes, cuts: list[int]) -> None:
    expected = normalised(run([whole]))
    points = sorted({min(c, len(whole)) for c in cuts} | {0, len(whole)})
    pieces = [whole[a:b] for a, b in itertools.pairwise(points) if b > a]
    assert normalised(run(pieces)) == expected
