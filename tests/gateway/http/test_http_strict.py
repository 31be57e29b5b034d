"""Requests that could be read two ways are refused, answered as RFC 9112 says, never forwarded.

Each case goes through a real gateway to a raw upstream that records every
byte it receives: it must receive nothing.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.gateway.conftest import GatewayFactory, RawUpstream, raw_exchange, simple_config

CASES = {
    "content_length_with_transfer_encoding": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        400,
    ),
    "duplicate_content_length": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    "comma_joined_content_length": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\nabcd",
        400,
    ),
    "bad_chunk_size": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "obs_fold": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    "bare_cr": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400),
    "invalid_header_name": (b"GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n", 400),
    "space_before_colon": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400),
    "control_character_in_value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n", 400),
    "nul_in_value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400),
    "transfer_encoding_gzip": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    ),
    "transfer_encoding_gzip_then_chunked": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    "http_2_0_version": (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    "http_1_2_version": (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
    "missing_host_on_1_1": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "repeated_host": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "connect_method": (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
    "control_character_in_target": (b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "request_line_too_long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    "header_too_large": (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n", 431),
    "too_many_headers": (
        b"GET / HTTP/1.1\r\nHost: a\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(120))
        + b"\r\n",
        431,
    ),
    "negative_content_length": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    "bare_lf_line_endings": (b"GET / HTTP/1.1\nHost: a\n\n", 400),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_ambiguous_or_invalid_request_is_refused_and_not_forwarded(
    name: str, make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    data, status = CASES[name]
    gw = await make_gateway(simple_config([raw_upstream.port]))
    out = await raw_exchange(gw.port, data)
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:200]
    assert b"connection: close" in out.lower()
    assert raw_upstream.received == b""


async def test_refusal_after_a_valid_pipelined_request_forwards_only_the_valid_one(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    gw = await make_gateway(simple_config([raw_upstream.port]))
    data = (
        b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /smuggle HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    out = await raw_exchange(gw.port, data)
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert b"GET /ok " in raw_upstream.received
    assert b"smuggle" not in raw_upstream.received


async def test_limits_come_from_gateway_settings(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    cfg = simple_config([raw_upstream.port], gateway={"maxHeaders": 8})
    gw = await make_gateway(cfg)
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(10))
    out = await raw_exchange(gw.port, b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    assert raw_upstream.received == b""


async def test_valid_absolute_form_target_routes_on_its_authority(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    gw = await make_gateway(simple_config([raw_upstream.port]))
    out = await raw_exchange(
        gw.port, b"GET http://example.test/p?q HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n"
    )
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert raw_upstream.received.startswith(b"GET /p?q HTTP/1.1\r\nHost: example.test\r\n")


async def test_pipelined_valid_requests_are_answered_in_order_then_the_refusal_then_close(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    gw = await make_gateway(simple_config([raw_upstream.port]))
    data = (
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /bad HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n"
        b"GET /never HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    out = await raw_exchange(gw.port, data)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", out)
    assert statuses == [b"200", b"200", b"400"], out
    first, second, refusal = out.split(b"HTTP/1.1 ")[1:]
    assert b"connection: close" not in first.lower() and b"connection: close" not in second.lower()
    assert b"portway-error: bad_request" in refusal and b"connection: close" in refusal.lower()
    assert raw_upstream.received.count(b"GET /") == 2
    assert b"/bad" not in raw_upstream.received and b"/never" not in raw_upstream.received


async def _serve(response: bytes) -> asyncio.Server:
    """An upstream answering `response` to every request head it reads."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if b"\r\n\r\n" in data:
                    writer.write(response)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_early_hints_are_relayed_before_the_final_response_to_http_1_1_only(
    make_gateway: GatewayFactory,
) -> None:
    server = await _serve(
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    async with server:
        gw = await make_gateway(simple_config([server.sockets[0].getsockname()[1]]))
        out = await raw_exchange(gw.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        assert out.startswith(hints + b"HTTP/1.1 200 OK\r\n"), out
        assert out.endswith(b"\r\n\r\nok")
        out = await raw_exchange(gw.port, b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200 OK\r\n"), out  # no 1xx to an HTTP/1.0 client


async def test_request_trailers_are_not_forwarded_as_header_fields(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    gw = await make_gateway(simple_config([raw_upstream.port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(  # kept alive: no Connection header (it made the old parser copy the head)
        b"POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\nX-Trailer-Smuggled: 1\r\n\r\n"
    )
    try:
        out = await asyncio.wait_for(reader.readuntil(b"\r\n\r\nok"), 3.0)
    finally:
        writer.close()
    assert out.startswith(b"HTTP/1.1 200 OK")
    head = bytes(raw_upstream.received).split(b"\r\n\r\n", 1)[0]
    assert b"x-trailer-smuggled" not in head.lower()
    assert bytes(raw_upstream.received).endswith(b"\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
