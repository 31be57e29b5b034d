"""RFC 9112 / RFC 9110 request MUSTs and smuggling variants, on real sockets.

Each case sends raw bytes to a real gateway in front of a raw upstream that
records every byte it receives, and asserts two things: the status RFC 9112
or RFC 9110 asks for (or, for requests that are valid, that they are
forwarded as the client meant them), and, when the request is refused, that
nothing at all reached the upstream. Section numbers are RFC 9112's unless
marked 9110.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.conftest import (
    GatewayFactory,
    RawUpstream,
    Upstream,
    raw_exchange,
    simple_config,
)

H = b"Host: a\r\n"
POST = b"POST / HTTP/1.1\r\n" + H

REFUSED: dict[str, tuple[bytes, int]] = {
    # 2.2 message parsing
    "bare_lf_line_endings": (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    "whitespace_before_first_header": (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    "bare_cr_in_request_line": (b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # 3 request line
    "lowercase_method_token_is_not_a_known_method": (b"get / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "invalid_method_character": (b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "lowercase_http_name": (b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    "missing_http_version": (b"GET /\r\n" + H + b"\r\n", 505),
    "http_2_0_version": (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    "http_1_2_version": (b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    "http2_preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    # 3.2 request target
    "nul_in_target": (b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "control_character_in_target": (b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "fragment_in_target": (b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "asterisk_form_with_get": (b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    "authority_form_with_get": (b"GET a:80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    "absolute_form_with_other_scheme": (b"GET ftp://a/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "connect_method": (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
    "request_line_too_long_414": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    # 3.2 Host (and 9110 7.2)
    "missing_host_on_1_1": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "repeated_host": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "host_with_space": (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    "host_with_slash": (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    "host_with_userinfo": (b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
    "absolute_form_authority_with_userinfo": (b"GET http://u@a/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    # 5 field syntax
    "space_before_colon": (b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", 400),
    "obs_fold": (b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n c\r\n\r\n", 400),
    "empty_field_name": (b"GET / HTTP/1.1\r\n" + H + b": v\r\n\r\n", 400),
    "invalid_field_name_character": (b"GET / HTTP/1.1\r\n" + H + b"X(A): b\r\n\r\n", 400),
    "nul_in_field_value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x00c\r\n\r\n", 400),
    "bare_cr_in_field_value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: b\rc\r\n\r\n", 400),
    "bare_lf_in_field_value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: b\nc: d\r\n\r\n", 400),
    "control_character_in_field_value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x01c\r\n\r\n", 400),
    "header_section_too_large_431": (
        b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 70000 + b"\r\n\r\n",
        431,
    ),
    "too_many_header_fields_431": (
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n",
        431,
    ),
    # 6 message body framing and smuggling
    "content_length_then_transfer_encoding": (
        POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "transfer_encoding_then_content_length": (
        POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        400,
    ),
    "obfuscated_transfer_encoding_space_before_colon": (
        POST + b"Content-Length: 3\r\nTransfer-Encoding : chunked\r\n\r\nabc",
        400,
    ),
    "transfer_encoding_chunked_twice": (
        POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "two_transfer_encoding_fields": (
        POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        400,
    ),
    "transfer_encoding_gzip_501": (POST + b"Transfer-Encoding: gzip\r\n\r\n", 501),
    "transfer_encoding_xchunked_501": (POST + b"Transfer-Encoding: xchunked\r\n\r\n", 501),
    "transfer_encoding_in_http_1_0": (
        b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "duplicate_differing_content_length": (
        POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    "duplicate_equal_content_length": (
        POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    "comma_joined_content_length": (POST + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    "content_length_with_plus_sign": (POST + b"Content-Length: +3\r\n\r\nabc", 400),
    "negative_content_length": (POST + b"Content-Length: -1\r\n\r\n", 400),
    "hex_content_length": (POST + b"Content-Length: 0x3\r\n\r\nabc", 400),
    "overflowing_content_length": (POST + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    "bad_chunk_size": (POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    "overflowing_chunk_size": (
        POST + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "bare_cr_in_chunk_extension": (
        POST + b"Transfer-Encoding: chunked\r\n\r\n3;a\rb\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "chunk_data_without_crlf": (
        POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n",
        400,
    ),
    # 9110 10.1.1 Expect
    "unknown_expectation_417": (b"GET / HTTP/1.1\r\n" + H + b"Expect: teapot\r\n\r\n", 417),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_invalid_or_ambiguous_request_gets_the_rfc_status_and_reaches_nothing(
    name: str, make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    data, status = REFUSED[name]
    gw = await make_gateway(simple_config([raw_upstream.port]))
    out = await raw_exchange(gw.port, data)
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:120]
    assert b"connection: close" in out.lower()
    assert raw_upstream.received == b"", raw_upstream.received[:200]
    assert raw_upstream.connections == 0


ACCEPTED: dict[str, tuple[bytes, bytes]] = {
    # (request, what the upstream must receive as its request line and Host)
    "leading_empty_line_is_ignored": (
        b"\r\nGET /x HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\n",
    ),
    "absolute_form_authority_wins_over_host": (
        b"GET http://a/x?q=1 HTTP/1.1\r\nHost: evil\r\nConnection: close\r\n\r\n",
        b"GET /x?q=1 HTTP/1.1\r\nHost: a\r\n",
    ),
    "tab_as_optional_whitespace_around_transfer_encoding": (
        POST + b"Transfer-Encoding:\tchunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\n",
    ),
    "obs_text_in_a_value_is_passed_as_is": (
        b"GET / HTTP/1.1\r\n" + H + b"X-A: caf\xc3\xa9\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xc3\xa9\r\n",
    ),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
async def test_valid_request_is_forwarded_as_meant(
    name: str, make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    data, expected_start = ACCEPTED[name]
    gw = await make_gateway(simple_config([raw_upstream.port]))
    out = await raw_exchange(gw.port, data)
    assert out.startswith(b"HTTP/1.1 200 "), out[:120]
    assert raw_upstream.received.startswith(expected_start), raw_upstream.received[:200]


async def test_request_pipelined_after_a_refused_one_is_never_forwarded(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    gw = await make_gateway(simple_config([raw_upstream.port]))
    smuggled = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
    out = await raw_exchange(gw.port, b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n" + smuggled)
    assert out.startswith(b"HTTP/1.1 400 ")
    assert out.count(b"HTTP/1.1 ") == 1
    assert raw_upstream.received == b""


async def test_body_of_a_refused_request_is_not_read_as_a_second_request(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    gw = await make_gateway(simple_config([raw_upstream.port]))
    hidden = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
    request = POST + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(hidden)
    out = await raw_exchange(gw.port, request + hidden)
    assert out.startswith(b"HTTP/1.1 400 ") and out.count(b"HTTP/1.1 ") == 1
    assert raw_upstream.received == b""


async def test_spoofed_forwarding_headers_from_an_untrusted_client_are_replaced(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    gw = await make_gateway(simple_config([raw_upstream.port]))
    spoof = (
        b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: admin\r\nX-Forwarded-Proto: https\r\n"
        b"Forwarded: for=10.0.0.1\r\nX-Real-IP: 10.0.0.1\r\n"
    )
    out = await raw_exchange(
        gw.port, b"GET / HTTP/1.1\r\n" + H + spoof + b"Connection: close\r\n\r\n"
    )
    assert out.startswith(b"HTTP/1.1 200 ")
    seen = bytes(raw_upstream.received)
    assert b"X-Forwarded-For: 127.0.0.1\r\n" in seen
    assert b"X-Forwarded-Proto: http\r\n" in seen
    assert b"X-Forwarded-Host: a\r\n" in seen
    assert b"10.0.0.1, " not in seen and b"for=10.0.0.1" not in seen and b"admin" not in seen


async def test_expect_100_continue_on_http_1_0_is_ignored(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"POST /sink HTTP/1.0\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    )
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)  # no interim 100 for HTTP/1.0
    writer.write(b"ok")
    out = await asyncio.wait_for(reader.read(), 3)
    assert out.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in out
    writer.close()
