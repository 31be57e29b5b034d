"""The upstream response core with plain bytes: RFC 9112 framing, no sockets."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.upstream.failure import UpstreamFailure, UpstreamProtocolError, UpstreamReset
from gateway.upstream.response_core import (
    TRANSITIONS,
    ResponseAction,
    ResponseCore,
    ResponseEvent,
    ResponseState,
)

Action = tuple[object, ...]


class Recorder:
    """A sink that writes down what the core tells it, in order."""

    def __init__(self) -> None:
        self.actions: list[Action] = []

    def on_response_head(self, head: ResponseCore, status: int) -> None:
        self.actions.append(("head", status, b"".join(head.head_lines()), head.has_length))

    def on_interim(self, head: ResponseCore, status: int) -> None:
        self.actions.append(("interim", status, b"".join(head.head_lines())))

    def on_response_body(self, data: bytes) -> None:
        self.actions.append(("body", data))

    def on_response_complete(self) -> None:
        self.actions.append(("complete",))

    def upstream_failed(self, failure: UpstreamFailure) -> None:
        self.actions.append(("failed", type(failure).__name__))

    def tunnel_data(self, data: bytes) -> None:
        self.actions.append(("tunnel", data))

    def flush_head(self) -> None:
        pass

    def upstream_pause_writing(self) -> None:
        pass

    def upstream_resume_writing(self) -> None:
        pass


def run(
    reads: list[bytes], *, head_only: bool = False, eof: bool = False, upgrade: bool = False
) -> tuple[list[Action], ResponseCore]:
    """Feed `reads` to a core serving one request (`upgrade`: one asking to switch
    protocols); the sink's actions and the core's returned actions in one list, body
    and tunnel chunks joined."""
    core = ResponseCore()
    sink = Recorder()
    core.start(sink, head_only=head_only, upgrade=upgrade)
    for data in reads:
        action = core.receive(data)
        if action:
            sink.actions.append(("action", ResponseAction(action).name))
            if action == ResponseAction.FAIL:
                sink.actions.append(("failure", type(core.failure).__name__))
            break
    else:
        if eof:
            action = core.end_of_stream()
            if action:
                sink.actions.append(("action", ResponseAction(action).name))
    return joined(sink.actions), core


def joined(actions: list[Action]) -> list[Action]:
    out: list[Action] = []
    for action in actions:
        if out and action[0] in ("body", "tunnel") and out[-1][0] == action[0]:
            out[-1] = (action[0], bytes(out[-1][1]) + bytes(action[1]))  # type: ignore[arg-type]
        else:
            out.append(action)
    return out


CL = b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
    b"3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-Trailer: t\r\n\r\n"
)


def test_content_length_body_then_reuse() -> None:
    actions, core = run([CL])
    assert actions == [
        ("head", 200, b"Server: t\r\nContent-Length: 5\r\n", True),
        ("body", b"hello"),
        ("action", "REUSE"),
    ]
    assert core.state == ResponseState.IDLE


def test_chunked_with_extensions_and_trailers() -> None:
    actions, core = run([CHUNKED])
    assert actions == [
        ("head", 200, b"X-A: 1\r\n", False),
        ("body", b"hello"),
        ("action", "REUSE"),
    ]
    assert core.chunked


def test_close_delimited_body_ends_at_eof() -> None:
    actions, core = run([b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nsome", b" more"], eof=True)
    assert actions == [
        ("head", 200, b"X: y\r\n", False),
        ("body", b"some more"),
        ("action", "CLOSE"),
    ]
    assert core.state == ResponseState.CLOSED


def test_http_1_0_response_is_not_reused() -> None:
    actions, _ = run([b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    assert actions[-1] == ("action", "CLOSE")


def test_connection_close_is_not_reused_and_hop_by_hop_dropped() -> None:
    actions, _ = run(
        [
            b"HTTP/1.1 200 OK\r\nConnection: close, X-Gone\r\nX-Gone: 1\r\nKeep-Alive: t=1\r\n"
            b"Content-Length: 0\r\n\r\n"
        ]
    )
    assert actions == [("head", 200, b"Content-Length: 0\r\n", True), ("action", "CLOSE")]


def test_interim_responses_come_before_the_final_one_and_100_is_not_relayed() -> None:
    actions, core = run(
        [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + CL]
    )
    assert actions == [
        ("interim", 103, b"Link: </a>\r\n"),
        ("head", 200, b"Server: t\r\nContent-Length: 5\r\n", True),
        ("body", b"hello"),
        ("action", "REUSE"),
    ]
    assert core.state == ResponseState.IDLE


def test_no_body_statuses_end_at_their_head() -> None:
    for status in (204, 304):
        head = b"HTTP/1.1 %d X\r\nETag: e\r\n\r\n" % status
        actions, core = run([head])
        assert actions == [("head", status, b"ETag: e\r\n", False), ("action", "REUSE")]
        assert core.state == ResponseState.IDLE


def test_response_to_head_ends_at_its_head_and_is_closed() -> None:
    actions, core = run([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"], head_only=True)
    assert actions == [("head", 200, b"Content-Length: 100\r\n", True), ("action", "CLOSE")]
    assert core.state == ResponseState.CLOSED


def test_switching_protocols_turns_bytes_into_tunnel_data() -> None:
    actions, core = run(
        [
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\nab",
            b"cd",
        ],
        upgrade=True,
    )
    assert actions == [("head", 101, b"", False), ("tunnel", b"abcd")]
    assert core.upgrade == b"websocket"
    assert core.state == ResponseState.TUNNEL


def test_switching_protocols_for_a_request_without_upgrade_fails_the_exchange() -> None:
    """A 101 answers only an Upgrade request (RFC 9110 15.2.2); to any other it is the
    endpoint's protocol error (502), never a tunnel."""
    actions, core = run(
        [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nopaque bytes"]
    )
    assert actions == [("action", "FAIL"), ("failure", "UpstreamProtocolError")]
    assert core.state != ResponseState.TUNNEL


def test_eof_mid_length_body_is_a_reset() -> None:
    actions, _ = run([b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"], eof=True)
    assert actions[-1] == ("action", "FAIL")
    core = ResponseCore()
    core.start(Recorder(), head_only=False)
    assert core.end_of_stream() == ResponseAction.FAIL
    assert isinstance(core.failure, UpstreamReset)


def test_garbage_is_a_protocol_error() -> None:
    actions, core = run([b"HTTQ/1.1 200 OK\r\n\r\n"])
    assert actions == [("action", "FAIL"), ("failure", "UpstreamProtocolError")]
    assert isinstance(core.failure, UpstreamProtocolError)
    assert core.state == ResponseState.CLOSED


def test_a_response_nobody_asked_for_is_a_protocol_error() -> None:
    core = ResponseCore()
    assert core.receive(CL) == ResponseAction.FAIL
    assert core.state == ResponseState.CLOSED


def test_keep_alive_connection_serves_a_second_request() -> None:
    core = ResponseCore()
    sink = Recorder()
    for _ in range(2):
        core.start(sink, head_only=False)
        assert core.receive(CL) == ResponseAction.REUSE
    assert [a[0] for a in sink.actions] == ["head", "body", "head", "body"]


def test_dropped_names_are_left_out() -> None:
    core = ResponseCore()
    sink = Recorder()
    core.start(sink, head_only=False, drop=frozenset({b"server", b"x-a"}))
    core.receive(b"HTTP/1.1 200 OK\r\nServer: s\r\nX-A: 1\r\nX-B: 2\r\nContent-Length: 0\r\n\r\n")
    assert sink.actions[0] == ("head", 200, b"X-B: 2\r\nContent-Length: 0\r\n", True)


def test_transition_table_is_closed_and_ends_in_closed() -> None:
    for (state, event), nxt in TRANSITIONS.items():
        assert isinstance(state, ResponseState) and isinstance(event, ResponseEvent)
        assert isinstance(nxt, ResponseState)
    for state in ResponseState:  # every state can be closed by either side
        assert TRANSITIONS[(state, ResponseEvent.CLOSE)] == ResponseState.CLOSED
        assert TRANSITIONS[(state, ResponseEvent.EOF)] == ResponseState.CLOSED
    assert (ResponseState.IDLE, ResponseEvent.HEAD) not in TRANSITIONS


STREAMS = [
    ([CL], False, False),
    ([CHUNKED], False, False),
    ([b"HTTP/1.1 100 Continue\r\n\r\n" + CHUNKED], False, False),
    ([b"HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n" + CL], False, False),
    ([b"HTTP/1.1 200 OK\r\n\r\nclose delimited body"], False, True),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"], True, False),
    ([b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nopaque bytes"], False, False),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"], False, True),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(STREAMS), st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_any_split_of_the_stream_gives_the_same_actions(
    stream: tuple[list[bytes], bool, bool], cuts: list[int]
) -> None:
    reads, head_only, eof = stream
    whole = b"".join(reads)
    upgrade = whole.startswith(b"HTTP/1.1 101")
    expected, _ = run([whole], head_only=head_only, eof=eof, upgrade=upgrade)
    points = sorted({min(c, len(whole)) for c in cuts} | {0, len(whole)})
    pieces = [whole[a:b] for a, b in itertools.pairwise(points) if b > a]
    actual, _ = run(pieces, head_only=head_only, eof=eof, upgrade=upgrade)
    assert actual == expected
