"""The native socket lane (`gateway/http/native/`) on loopback: what only the lane does.

Every test runs a real gateway whose plain-HTTP listener is served by the
lane, and asserts what a client or an upstream sees on the wire, plus the
lane's counters (`pools.lane.stats()`) where the path taken is the point.
Where the lane must answer "exactly as before", the same bytes go to a
gateway with `nativeSockets: false` and the two answers are compared.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.gateway.conftest import (
    Gateway,
    GatewayFactory,
    RawUpstream,
    Upstream,
    free_port,
    raw_exchange,
    simple_config,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def stats(gw: Gateway) -> dict[str, int]:
    lane = gw.ctx.pools.lane
    assert lane is not None, "the listener is served by the native lane"
    result: dict[str, int] = lane.stats()
    return result


def pool_of(gw: Gateway) -> Any:
    return next(iter(gw.ctx.pools.pools.values()))


def split_response(data: bytes) -> tuple[bytes, bytes]:
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, data
    return head, rest


def head_fields(head: bytes) -> dict[bytes, list[bytes]]:
    fields: dict[bytes, list[bytes]] = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    return fields


def dechunk(data: bytes) -> tuple[bytes, bytes]:
    """A chunked body's data and what follows its last chunk (strict framing)."""
    out = b""
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        assert sep, "unterminated chunk size line"
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            assert data.startswith(b"\r\n"), data[:40]
            return out, data[2:]
        out += data[:size]
        assert data[size : size + 2] == b"\r\n"
        data = data[size + 2 :]


def echo_of(out: bytes) -> dict[str, Any]:
    """The /echo JSON of a single Content-Length response."""
    head, body = split_response(out)
    length = int(head_fields(head)[b"content-length"][0])
    info: dict[str, Any] = json.loads(body[:length])
    return info


def header(info: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in info["headers"] if k.lower() == name.lower()]


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    """Start raw TCP endpoints running a handler; returns their port."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()


def canned(response: bytes, *, close: bool = False, got: list[bytes] | None = None) -> Handler:
    """A handler answering every request head with `response` (closing after it if asked)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if got is not None:
                    got.append(head)
                writer.write(response)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle


async def exchange_keepalive(port: int, requests: list[bytes], timeout: float = 3.0) -> bytes:
    """Write the requests one by one on one connection, reading each Content-Length answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = b""
    try:
        for req in requests:
            writer.write(req)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            length = int(head_fields(head[:-4])[b"content-length"][0])
            out += head + await asyncio.wait_for(reader.readexactly(length), timeout)
    finally:
        writer.close()
    return out


# --- 1. the fast path and upstream reuse ---------------------------------------------


async def test_plain_gets_take_the_fast_path_and_reuse_one_upstream_socket(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    reqs = [f"GET /k{i}?q={i} HTTP/1.1\r\nHost: a\r\n\r\n".encode() for i in range(5)]
    out = await exchange_keepalive(gw.port, reqs)
    answers = out.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(answers) == 5
    peers = set()
    for i, answer in enumerate(answers):
        info = echo_of(b"HTTP/1.1 200 OK\r\n" + answer)
        assert info["path"] == f"/k{i}?q={i}"
        assert header(info, "x-forwarded-for") == ["127.0.0.1"]
        assert len(header(info, "x-request-id")) == 1
        peers.add(info["peer_port"])
    assert len(peers) == 1
    s = stats(gw)
    assert s["fast_requests"] == 5 and s["slow_connections"] == 0
    assert s["upstream_connects"] == 1 and s["upstream_reused"] == 4
    assert s["accepted"] == 1
    pool = pool_of(gw)
    assert pool.total == 1 and gw.ctx.pools.idle_count(pool) == 1


async def test_a_fast_connection_shows_fast_in_its_transport(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    natives = [c.native for c in gw.ctx.connections]  # type: ignore[attr-defined]
    assert len(natives) == 1 and natives[0].fast
    writer.write(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
    await asyncio.sleep(0.2)
    assert not natives[0].fast
    writer.close()


async def test_evicted_idle_sockets_free_their_slots_and_the_next_request_reconnects(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """What the pool sweep asks of the lane (`evict_idle`): close, report, reconnect."""
    gw = await make_gateway(simple_config([upstream.port]))
    req = b"GET /e HTTP/1.1\r\nHost: a\r\n\r\n"
    await exchange_keepalive(gw.port, [req, req])
    pool = pool_of(gw)
    assert pool.total == 1 == gw.ctx.pools.idle_count(pool)
    gw.ctx.pools.lane.evict_idle(0.0)
    assert pool.total == 0 == gw.ctx.pools.idle_count(pool)
    out = await exchange_keepalive(gw.port, [req])
    assert out.startswith(b"HTTP/1.1 200 OK") and b'"/e"' in out
    s = stats(gw)
    assert s["upstream_connects"] == 2 and s["upstream_reused"] == 1
    assert pool.total == 1 == gw.ctx.pools.idle_count(pool)


# --- 2. heads that leave the fast path ------------------------------------------------


async def differential(
    make_gateway: GatewayFactory, upstream: Upstream, data: bytes
) -> tuple[Any, Any, Gateway]:
    """The same bytes to a lane gateway and a no-lane gateway: both answers, normalised."""
    lane_gw = await make_gateway(simple_config([upstream.port]))
    plain_gw = await make_gateway(simple_config([upstream.port], gateway={"nativeSockets": False}))
    assert plain_gw.ctx.pools.lane is None
    lane_out = await raw_exchange(lane_gw.port, data)
    plain_out = await raw_exchange(plain_gw.port, data)
    return normalise(lane_out, lane_gw.port), normalise(plain_out, plain_gw.port), lane_gw


def normalise(out: bytes, port: int) -> Any:
    """A response with what differs between two gateways (ports, ids, dates) blanked."""
    head, body = split_response(out)
    fields = head_fields(head)
    fields.pop(b"date", None)
    fields.pop(b"content-length", None)
    fields.pop(b"x-request-id", None)
    status = head.split(b"\r\n")[0]
    if body.startswith(b"{"):
        info = json.loads(body)
        info.pop("peer_port")
        info["headers"] = [
            [k, v.replace(str(port), "PORT")]
            for k, v in info["headers"]
            if k.lower() != "x-request-id"
        ]
        return status, fields, info
    return status, fields, body


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(
            b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            200,
            id="content-length",
        ),
        pytest.param(
            b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close"
            b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            200,
            id="chunked",
        ),
        pytest.param(
            b"GET /f HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n",
            200,
            id="x-forwarded-for",
        ),
        pytest.param(b"GET /lf HTTP/1.1\nHost: a\nConnection: close\n\n", 400, id="bare-lf"),
        pytest.param(
            b"GET /fold HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\nConnection: close\r\n\r\n",
            400,
            id="obs-fold",
        ),
        pytest.param(b"GET /ten HTTP/1.0\r\nHost: a\r\n\r\n", 200, id="http-1.0"),
        pytest.param(
            b"GET /ka HTTP/1.1\r\nHost: a\r\nKeep-Alive: timeout=5\r\nConnection: close\r\n\r\n",
            200,
            id="keep-alive-field",
        ),
        pytest.param(
            b"GET /abs HTTP/1.1\r\nHost: a\r\nConnection: close, X-Gone\r\nX-Gone: 1\r\n\r\n",
            200,
            id="connection-list",
        ),
    ],
)
async def test_heads_off_the_fast_path_are_answered_as_without_the_lane(
    make_gateway: GatewayFactory, upstream: Upstream, data: bytes, status: int
) -> None:
    lane_answer, plain_answer, lane_gw = await differential(make_gateway, upstream, data)
    assert lane_answer[0].startswith(b"HTTP/1.1 %d " % status), lane_answer
    s = stats(lane_gw)
    assert s["slow_connections"] == 1 and s["fast_requests"] == 0
    assert lane_answer == plain_answer


async def test_a_client_request_id_is_forwarded_unchanged_off_the_fast_path(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    out = await raw_exchange(
        gw.port,
        b"GET /id HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc-123\r\nConnection: close\r\n\r\n",
    )
    info = echo_of(out)
    assert header(info, "x-request-id") == ["abc-123"]
    assert stats(gw)["slow_connections"] == 1


async def test_a_client_x_forwarded_for_is_replaced_off_the_fast_path(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    out = await raw_exchange(
        gw.port,
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n",
    )
    assert header(echo_of(out), "x-forwarded-for") == ["127.0.0.1"]
    assert stats(gw)["slow_connections"] == 1


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(b"GET /two HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="two-hosts"),
        pytest.param(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, id="space-in-target"),
        pytest.param(b"GET /nohost HTTP/1.1\r\n\r\n", 400, id="no-host"),
        pytest.param(b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, id="long-line"),
        pytest.param(
            b"GET /ctl HTTP/1.1\r\nHost: a\r\nX-Bad: a\x01b\r\n\r\n", 400, id="ctl-in-value"
        ),
        pytest.param(
            b"GET /sp HTTP/1.1\r\nHost: a\r\nX-Bad : v\r\n\r\n", 400, id="space-before-colon"
        ),
        pytest.param(
            b"GET /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
            400,
            id="two-lengths",
        ),
    ],
)
async def test_malformed_heads_are_refused_and_never_reach_the_upstream(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream, data: bytes, status: int
) -> None:
    gw = await make_gateway(simple_config([raw_upstream.port]))
    out = await raw_exchange(gw.port, data)
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:200]
    await asyncio.sleep(0.05)
    assert raw_upstream.received == b"" and raw_upstream.connections == 0
    s = stats(gw)
    assert s["fast_requests"] == 0 and s["slow_connections"] == 1


async def test_a_bad_host_on_the_fast_path_is_refused(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    gw = await make_gateway(simple_config([raw_upstream.port]))
    out = await raw_exchange(gw.port, b"GET /h HTTP/1.1\r\nHost: a b@c\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    assert raw_upstream.received == b""


# --- 3. pipelining --------------------------------------------------------------------


async def test_pipelined_plain_requests_are_answered_in_order_on_the_fast_path(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    paths = ["/slow?s=0.2", "/one", "/slow?s=0.05", "/two"]
    data = b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths)
    data += b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = await raw_exchange(gw.port, data)
    bodies = out.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(bodies) == 5
    assert b"slow" in bodies[0] and b'"/one"' in bodies[1]
    assert b"slow" in bodies[2] and b'"/two"' in bodies[3] and b'"/last"' in bodies[4]
    s = stats(gw)
    assert s["fast_requests"] == 5 and s["slow_connections"] == 0


async def test_a_pipelined_body_request_after_a_fast_one_goes_slow_in_order(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    data = (
        b"GET /slow?s=0.1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    out = await raw_exchange(gw.port, data)
    bodies = out.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(bodies) == 3
    assert b"slow" in bodies[0]
    assert b'"/p"' in bodies[1] and b'"body_len": 5' in bodies[1]
    assert b'"/after"' in bodies[2]
    s = stats(gw)
    assert s["fast_requests"] == 1 and s["slow_connections"] == 1


async def test_a_half_closed_client_gets_its_answer(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /slow?s=0.2 HTTP/1.1\r\nHost: a\r\n\r\n")
    writer.write_eof()
    out = await asyncio.wait_for(reader.read(-1), 3)
    writer.close()
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"slow")
    assert stats(gw)["fast_requests"] == 1


async def test_pipelined_fast_requests_then_a_half_close_are_all_answered(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n")
    writer.write_eof()
    out = await asyncio.wait_for(reader.read(-1), 3)
    writer.close()
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 2, out
    assert b'"/one"' in out and b'"/two"' in out


async def test_more_pipelined_heads_than_the_lane_holds_are_all_answered_in_order(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """1500 heads (~150 KB) in one write: past the lane's 64 KiB hold it stops reading
    the client until the heads it holds are answered, then reads on."""
    gw = await make_gateway(simple_config([upstream.port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    n = 1500
    pad = b"x" * 60
    writer.write(
        b"".join(b"GET /p%05d?%s HTTP/1.1\r\nHost: a\r\n\r\n" % (i, pad) for i in range(n))
    )
    for i in range(n):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(head_fields(head[:-4])[b"content-length"][0])
        body = await asyncio.wait_for(reader.readexactly(length), 5)
        assert b'"/p%05d?' % i in body, (i, body[:80])
    writer.close()
    s = stats(gw)
    assert s["fast_requests"] == n and s["slow_connections"] == 0
    assert s["upstream_connects"] == 1 and s["upstream_reused"] == n - 1


# --- 4. upstream framing relayed by C ---------------------------------------------------


async def one_response(
    make_gateway: GatewayFactory,
    scripted: Callable[[Handler], Awaitable[int]],
    response: bytes,
    request: bytes = b"GET /r HTTP/1.1\r\nHost: a\r\n\r\n",
    *,
    close: bool = False,
) -> tuple[bytes, Gateway, list[bytes]]:
    """The client's raw answer to `request` from an endpoint writing `response`."""
    got: list[bytes] = []
    port = await scripted(canned(response, close=close, got=got))
    gw = await make_gateway(simple_config([port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(request)
    out = b""
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), 0.5)
            if not data:
                break
            out += data
    except TimeoutError:
        pass
    finally:
        writer.close()
    return out, gw, got


async def test_content_length_body_is_relayed_and_the_socket_pooled(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Up: 1\r\n\r\nhello world"
    out, gw, got = await one_response(make_gateway, scripted, resp)
    head, body = split_response(out)
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"hello world"
    assert head_fields(head)[b"content-length"] == [b"11"]
    assert head_fields(head)[b"x-up"] == [b"1"]
    assert len(got) == 1 and got[0].startswith(b"GET /r HTTP/1.1\r\n")
    assert gw.ctx.pools.idle_count(pool_of(gw)) == 1
    assert stats(gw)["fast_requests"] == 1


async def test_chunked_body_with_extensions_and_trailers_is_rechunked_without_trailers(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    resp = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"6 ; other\r\n world\r\n"
        b"0\r\nX-Sum: abc\r\nX-More: 1\r\n\r\n"
    )
    out, gw, _ = await one_response(make_gateway, scripted, resp)
    head, rest = split_response(out)
    fields = head_fields(head)
    assert fields[b"transfer-encoding"] == [b"chunked"]
    assert b"trailer" not in fields
    data, after = dechunk(rest)
    assert data == b"hello world" and after == b""
    assert b"X-Sum" not in rest and b"name=value" not in rest
    assert gw.ctx.pools.idle_count(pool_of(gw)) == 1


async def test_chunked_body_split_across_reads_is_relayed_whole(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        parts = [
            b"HTTP/1.1 200 OK\r\nTransfer-",
            b"Encoding: chunked\r\n\r\n",
            b"a\r",
            b"\n0123",
            b"456789\r",
            b"\n0\r\n",
            b"\r\n",
        ]
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.02)
        await asyncio.sleep(1)
        writer.close()

    port = await scripted(handle)
    gw = await make_gateway(simple_config([port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /s HTTP/1.1\r\nHost: a\r\n\r\n")
    out = b""
    while not out.endswith(b"0\r\n\r\n"):
        data = await asyncio.wait_for(reader.read(65536), 3)
        assert data, out
        out += data
    writer.close()
    _, rest = split_response(out)
    assert dechunk(rest) == (b"0123456789", b"")


async def test_close_delimited_body_is_chunked_for_a_1_1_client_and_not_reused(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    resp = b"HTTP/1.1 200 OK\r\nX-Up: 1\r\n\r\n" + b"q" * 100000
    out, gw, _ = await one_response(make_gateway, scripted, resp, close=True)
    head, rest = split_response(out)
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert head_fields(head).get(b"transfer-encoding") == [b"chunked"]
    data, after = dechunk(rest)
    assert data == b"q" * 100000 and after == b""
    await asyncio.sleep(0.05)
    pool = pool_of(gw)
    assert gw.ctx.pools.idle_count(pool) == 0 and pool.total == 0


async def test_close_delimited_body_reaches_a_1_0_client_close_delimited(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    resp = b"HTTP/1.0 200 OK\r\n\r\nabcdef"
    out, _, _ = await one_response(
        make_gateway, scripted, resp, b"GET /r HTTP/1.0\r\nHost: a\r\n\r\n", close=True
    )
    head, body = split_response(out)
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"abcdef"
    assert b"chunked" not in head.lower()


async def test_a_second_request_after_a_close_delimited_one_opens_a_new_socket(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    got: list[bytes] = []
    port = await scripted(canned(b"HTTP/1.1 200 OK\r\n\r\nbody", close=True, got=got))
    gw = await make_gateway(simple_config([port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    for _ in range(2):
        writer.write(b"GET /r HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 3) == (
            b"4\r\nbody\r\n0\r\n\r\n"
        )
    writer.close()
    s = stats(gw)
    assert s["upstream_connects"] == 2 and s["upstream_reused"] == 0 and len(got) == 2


async def test_head_response_with_content_length_has_no_body(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    got: list[bytes] = []
    port = await scripted(canned(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", got=got))
    gw = await make_gateway(simple_config([port]))
    out = await exchange_keepalive_head_then_get(gw.port)
    first, second = out
    assert first.startswith(b"HTTP/1.1 200 OK") and b"content-length: 1234" in first.lower()
    assert second.startswith(b"HTTP/1.1 200 OK")
    assert [g.split(b" ")[0] for g in got] == [b"HEAD", b"HEAD"]
    assert stats(gw)["upstream_reused"] == 1


async def exchange_keepalive_head_then_get(port: int) -> tuple[bytes, bytes]:
    """Two HEAD requests on one connection: each answer is a head alone."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    heads = []
    for _ in range(2):
        writer.write(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n")
        heads.append(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.2)
    writer.close()
    return heads[0], heads[1]


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
async def test_bodiless_statuses_end_at_the_head_and_pool_the_socket(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]], status: bytes
) -> None:
    port = await scripted(canned(b"HTTP/1.1 " + status + b'\r\nETag: "e"\r\n\r\n'))
    gw = await make_gateway(simple_config([port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    for _ in range(2):
        writer.write(b"GET /n HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 " + status)
        assert b"transfer-encoding" not in head.lower()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.2)
    writer.close()
    s = stats(gw)
    assert s["upstream_connects"] == 1 and s["upstream_reused"] == 1


async def test_early_hints_are_relayed_before_the_final_response(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    resp = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    out, _, _ = await one_response(make_gateway, scripted, resp)
    interim, _, final = out.partition(b"\r\n\r\n")
    assert interim.startswith(b"HTTP/1.1 103 ")
    assert b"link: </style.css>; rel=preload" in interim.lower()
    head, body = split_response(final)
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"ok"


async def test_100_continue_from_the_upstream_is_not_relayed(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    resp = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    out, _, _ = await one_response(make_gateway, scripted, resp)
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"\r\n\r\nok")


async def test_headers_named_by_connection_and_hop_by_hop_headers_are_dropped(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    resp = (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nX-Private: secret\r\n"
        b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n"
        b"Content-Length: 2\r\n\r\nok"
    )
    out, gw, _ = await one_response(make_gateway, scripted, resp)
    head, body = split_response(out)
    fields = head_fields(head)
    assert body == b"ok" and fields[b"x-kept"] == [b"yes"]
    for name in (b"x-private", b"keep-alive", b"proxy-connection"):
        assert name not in fields, head
    assert b"secret" not in out
    assert gw.ctx.pools.idle_count(pool_of(gw)) == 1


async def test_connection_close_from_the_upstream_is_not_pooled(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    resp = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    out, gw, _ = await one_response(make_gateway, scripted, resp, close=True)
    _, body = split_response(out)
    assert body == b"ok"
    await asyncio.sleep(0.05)
    pool = pool_of(gw)
    assert gw.ctx.pools.idle_count(pool) == 0 and pool.total == 0


async def test_a_response_arriving_byte_by_byte_is_relayed_whole(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    resp = (
        b"HTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
        b"5;e=1\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n"
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                for i in range(len(resp)):
                    writer.write(resp[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(0.001)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    gw = await make_gateway(simple_config([await scripted(handle)]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    for _ in range(2):
        writer.write(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        out = b""
        while not out.endswith(b"\r\n0\r\n\r\n"):
            data = await asyncio.wait_for(reader.read(65536), 3)
            assert data, out
            out += data
        interim, _, final = out.partition(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 103 ")
        head, body = split_response(final)
        assert head.startswith(b"HTTP/1.1 200 OK") and head_fields(head)[b"x-a"] == [b"1"]
        assert dechunk(body) == (b"hello world", b"")
    writer.close()
    assert stats(gw)["upstream_connects"] == 1 and stats(gw)["upstream_reused"] == 1


async def test_a_large_body_reaches_a_slow_reader_intact(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    big = bytes(range(256)) * (6_000_000 // 256)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
        await writer.drain()
        await asyncio.sleep(5)

    gw = await make_gateway(simple_config([await scripted(handle)]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port, limit=1024)
    writer.write(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert head_fields(head[:-4])[b"content-length"] == [str(len(big)).encode()]
    got = bytearray()
    reads = 0
    while len(got) < len(big):
        got += await asyncio.wait_for(reader.read(4096), 3)
        reads += 1
        if reads % 200 == 0:
            await asyncio.sleep(0.05)  # the lane must pause the upstream meanwhile
    writer.close()
    assert bytes(got) == big


@pytest.mark.parametrize("framing", ["close-delimited", "chunked"])
async def test_a_large_unsized_body_reaches_a_slow_reader_rechunked_and_intact(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]], framing: str
) -> None:
    big = bytes(range(256)) * (4_000_000 // 256)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if framing == "close-delimited":
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + big)
            await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(big), 10000):
            piece = big[i : i + 10000]
            writer.write(b"%x;e\r\n" % len(piece) + piece + b"\r\n")
        writer.write(b"0\r\nT: x\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    gw = await make_gateway(simple_config([await scripted(handle)]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port, limit=1024)
    writer.write(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert head_fields(head[:-4])[b"transfer-encoding"] == [b"chunked"]
    got = bytearray()
    reads = 0
    while not got.endswith(b"\r\n0\r\n\r\n"):
        data = await asyncio.wait_for(reader.read(4096), 3)
        assert data, len(got)
        got += data
        reads += 1
        if reads % 200 == 0:
            await asyncio.sleep(0.05)
    writer.close()
    assert dechunk(bytes(got)) == (big, b"")


async def test_a_stale_pooled_socket_is_retried_once_on_a_fresh_one(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    """The endpoint closes its first keep-alive connection on the second request, unanswered."""
    conns: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(len(conns))
        answers = 1 if len(conns) == 1 else 100
        try:
            for _ in range(answers):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    gw = await make_gateway(simple_config([await scripted(handle)]))
    out = await exchange_keepalive(gw.port, [b"GET /s HTTP/1.1\r\nHost: a\r\n\r\n"] * 3)
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert len(conns) == 2
    s = stats(gw)
    assert s["upstream_connects"] == 2 and s["upstream_reused"] == 2


async def test_bytes_on_an_idle_pooled_socket_retire_it(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    gw = await make_gateway(simple_config([await scripted(handle)]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    for _ in range(2):
        writer.write(b"GET /g HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 2\r\n" in head
        assert await asyncio.wait_for(reader.readexactly(2), 3) == b"ok"
        await asyncio.sleep(0.2)
    writer.close()
    s = stats(gw)
    assert s["upstream_connects"] == 2 and s["upstream_reused"] == 0


async def test_many_keep_alive_clients_share_the_pool_and_account_for_every_socket(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))

    async def client(i: int) -> None:
        reqs = [b"GET /c%d-%d HTTP/1.1\r\nHost: a\r\n\r\n" % (i, j) for j in range(10)]
        out = await exchange_keepalive(gw.port, reqs, timeout=5)
        for j in range(10):
            assert b'"/c%d-%d"' % (i, j) in out

    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(30))), 20)
    await asyncio.sleep(0.1)
    s = stats(gw)
    assert s["fast_requests"] == 300 and s["accepted"] == 30
    assert s["upstream_connects"] + s["upstream_reused"] == 300
    pool = pool_of(gw)
    assert 1 <= pool.total == gw.ctx.pools.idle_count(pool) <= s["upstream_connects"]


async def test_requests_queued_at_the_connection_cap_get_the_native_socket(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    config = simple_config([upstream.port], rule={"timeouts": {"connect": "1s"}})
    config["backends"][0]["circuitBreaker"] = {"maxConnections": 1}
    gw = await make_gateway(config)

    async def one(path: bytes) -> bytes:
        req = b"GET " + path + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        return await raw_exchange(gw.port, req, timeout=5)

    outs = await asyncio.gather(one(b"/slow?s=0.2"), one(b"/slow?s=0.05"), one(b"/x"))
    assert [out.split(b"\r\n")[0] for out in outs] == [b"HTTP/1.1 200 OK"] * 3
    pool = pool_of(gw)
    assert pool.total == 1 == gw.ctx.pools.idle_count(pool)


# --- 5. upstream faults before the head --------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok", id="bad-status"),
        pytest.param(b"HTTX/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", id="bad-version"),
        pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", id="bare-lf"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", id="two-lengths"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", id="unknown-coding"),
        # the event loop's path relays these three as 200 chunked (dropping a gzip coding
        # the client then cannot know of) and 099 as "99 Status": the lane is stricter
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            id="coding-then-chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            id="chunked-twice",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nok", id="identity"),
        pytest.param(b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok", id="status-099"),
        pytest.param(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
            id="unasked-101",
        ),
    ],
)
async def test_a_malformed_response_head_is_502(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]], response: bytes
) -> None:
    out, gw, _ = await one_response(make_gateway, scripted, response)
    assert out.startswith(b"HTTP/1.1 502 "), out[:200]
    assert b"portway-error: upstream_protocol_error" in out.lower()
    await asyncio.sleep(0.05)
    assert pool_of(gw).total == 0


async def test_an_upstream_closing_without_an_answer_is_502(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    out, _, got = await one_response(make_gateway, scripted, b"", close=True)
    assert out.startswith(b"HTTP/1.1 502 "), out[:200]
    assert b"portway-error: upstream_reset" in out.lower()
    assert len(got) == 1


async def test_an_upstream_closing_without_an_answer_is_retried_when_reset_is_retriable(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]], upstream: Upstream
) -> None:
    got: list[bytes] = []
    bad = await scripted(canned(b"", close=True, got=got))
    rule = {"retry": {"attempts": 2, "on": ["reset"], "backoffBase": "1ms", "backoffMax": "2ms"}}
    config = simple_config([bad, upstream.port], rule=rule)
    config["backends"][0]["loadBalancer"] = {"policy": "random"}
    gw = await make_gateway(config)
    good_key = gw.ctx.table.backends["app"].endpoints[1].key
    gw.ctx.state.set_draining(good_key, True)  # the first try lands on the bad endpoint
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /retry HTTP/1.1\r\nHost: a\r\n\r\n")
    await asyncio.sleep(0)
    gw.ctx.state.set_draining(good_key, False)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    writer.close()
    assert head.startswith(b"HTTP/1.1 200 OK"), head
    assert len(got) == 1


async def test_connection_refused_without_retry_is_503(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(simple_config([free_port()]))
    out = await raw_exchange(gw.port, b"GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503 "), out[:200]
    assert b"portway-error: upstream_connect_failure" in out.lower()
    s = stats(gw)
    assert s["fast_requests"] == 1 and s["upstream_connects"] == 1
    assert pool_of(gw).total == 0


async def test_connection_refused_fails_over_with_retry(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    rule = {"retry": {"attempts": 2, "backoffBase": "1ms", "backoffMax": "2ms"}}
    gw = await make_gateway(simple_config([free_port(), upstream.port], rule=rule))
    reqs = [b"GET /f HTTP/1.1\r\nHost: a\r\n\r\n"] * 20
    out = await exchange_keepalive(gw.port, reqs)
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 20
    assert stats(gw)["fast_requests"] == 20


# --- 6. nativeSockets: false -----------------------------------------------------------------


async def test_native_sockets_off_serves_without_a_lane(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port], gateway={"nativeSockets": False}))
    reqs = [b"GET /off HTTP/1.1\r\nHost: a\r\n\r\n"] * 2
    out = await exchange_keepalive(gw.port, reqs)
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 2 and b'"/off"' in out
    assert gw.ctx.pools.lane is None
    assert all(getattr(c, "native", None) is None for c in gw.ctx.connections)


# --- 7. a client gone mid-response ----------------------------------------------------------


async def test_a_client_closing_mid_response_leaks_nothing_and_the_next_is_served(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /stream?n=20000000 HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.wait_for(reader.readexactly(100000), 3)
        writer.transport.abort()
    out = await raw_exchange(gw.port, b"GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") and b'"/next"' in out
    pool = pool_of(gw)
    for _ in range(50):
        if pool.total == gw.ctx.pools.idle_count(pool) and not gw.ctx.connections:
            break
        await asyncio.sleep(0.02)
    assert pool.total == gw.ctx.pools.idle_count(pool) <= 1
    assert not gw.ctx.connections
    assert stats(gw)["fast_requests"] == 4


# --- the lane against the event loop's path, byte for byte ------------------------------


def blank(out: bytes, port: int) -> bytes:
    """A raw answer with what differs between two gateways blanked."""
    out = re.sub(rb"(?im)^(date|x-request-id|content-length): .*\r\n", b"", out)
    out = re.sub(rb'"peer_port": \d+', b"", out.replace(str(port).encode(), b"PORT"))
    return re.sub(rb'\["X-Request-Id", "[^"]*"\], ', b"", out)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(
            b"GET /e HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
            400,
            id="empty-host",
        ),
        pytest.param(
            b"GET /d HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n"
            b"Connection: close\r\n\r\n",
            400,
            id="two-zero-lengths",
        ),
        pytest.param(
            b"GET /z HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            200,
            id="one-zero-length",
        ),
        pytest.param(
            b"GET /o HTTP/1.1\r\nHost: a\r\nOrigin: http://o\r\nCookie: a=1\r\nCookie: b=2\r\n"
            b"X-Empty:\r\nX-Pad: \t v \t\r\nConnection: close\r\n\r\n",
            200,
            id="plain-fields",
        ),
    ],
)
async def test_fast_heads_are_answered_as_without_the_lane(
    make_gateway: GatewayFactory, upstream: Upstream, data: bytes, status: int
) -> None:
    lane_gw = await make_gateway(simple_config([upstream.port]))
    plain_gw = await make_gateway(simple_config([upstream.port], gateway={"nativeSockets": False}))
    plain_out = blank(await raw_exchange(plain_gw.port, data), plain_gw.port)
    assert plain_out.startswith(b"HTTP/1.1 %d " % status), plain_out[:200]
    lane_out = blank(await raw_exchange(lane_gw.port, data), lane_gw.port)
    assert lane_out == plain_out


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n",
            id="length-and-chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
            id="repeated-equal-length",
        ),
        pytest.param(b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", id="no-reason"),
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", id="http-1.0"),
        pytest.param(b"HTTP/1.1 599 Odd\r\nContent-Length: 2\r\n\r\nok", id="status-599"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", id="extra-bytes"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-F: a\r\n b\r\nContent-Length: 2\r\n\r\nok", id="fold"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", id="signed-length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\nok",
            id="connection-names-length",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\nServer: up\r\n"
            b"Via: 1.1 other\r\nContent-Length: 2\r\n\r\nok",
            id="hop-fields",
        ),
        pytest.param(
            b"HTTP/1.1 103 Early\r\nLink: <a>\r\n\r\nHTTP/1.1 103 Early\r\nLink: <b>\r\n\r\n"
            b"HTTP/1.1 204 No Content\r\n\r\n",
            id="two-hints-then-204",
        ),
        pytest.param(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", id="304-with-length"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
            id="chunked-capitalised",
        ),
    ],
)
async def test_upstream_heads_are_relayed_as_without_the_lane(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]], response: bytes
) -> None:
    lane_gw = await make_gateway(simple_config([await scripted(canned(response, close=True))]))
    plain_gw = await make_gateway(
        simple_config(
            [await scripted(canned(response, close=True))], gateway={"nativeSockets": False}
        )
    )
    req = b"GET /r HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    plain_out = blank(await raw_exchange(plain_gw.port, req), plain_gw.port)
    lane_out = blank(await raw_exchange(lane_gw.port, req), lane_gw.port)
    assert lane_out == plain_out
    assert stats(lane_gw)["fast_requests"] == 1
