"""PROXY protocol v1/v2 headers as bytes: parsed whole, asked for more, or refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.l4.proxy_protocol import (
    LOCAL,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    parse_proxy_header,
)


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


V1_TCP4 = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n"
V2_TCP4 = v2(1, 0x11, bytes([192, 0, 2, 7, 10, 0, 0, 1]) + struct.pack("!HH", 56324, 443))
V2_TCP6 = v2(
    1,
    0x21,
    bytes.fromhex("20010db8" + "0" * 23 + "1") + bytes(16) + struct.pack("!HH", 1, 2),
)


def test_v1_tcp4_and_tcp6() -> None:
    assert parse_proxy_header(V1_TCP4 + b"GET /") == (
        ProxyHeader("192.0.2.7", 56324, "10.0.0.1", 443),
        len(V1_TCP4),
    )
    line = b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"
    assert parse_proxy_header(line) == (ProxyHeader("2001:db8::1", 1, "::1", 2), len(line))
    assert parse_proxy_header(b"PROXY UNKNOWN\r\n") == (LOCAL, 15)


def test_v2_tcp4_tcp6_and_local() -> None:
    assert parse_proxy_header(V2_TCP4 + b"rest") == (
        ProxyHeader("192.0.2.7", 56324, "10.0.0.1", 443),
        len(V2_TCP4),
    )
    header, used = parse_proxy_header(V2_TCP6)  # type: ignore[misc]
    assert header.source == "2001:db8::1" and used == len(V2_TCP6)
    assert parse_proxy_header(v2(0, 0x00, b"")) == (LOCAL, 16)
    with_tlvs = v2(1, 0x11, V2_TCP4[16:] + b"\x04\x00\x01x")
    assert parse_proxy_header(with_tlvs) == (parse_proxy_header(V2_TCP4)[0], len(with_tlvs))  # type: ignore[index]


@pytest.mark.parametrize("whole", [V1_TCP4, V2_TCP4, V2_TCP6])
def test_every_prefix_asks_for_more(whole: bytes) -> None:
    for cut in range(len(whole)):
        assert parse_proxy_header(whole[:cut]) is None


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 56324\r\n",
        b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 0443 443\r\n",
        b"PROXY " + b"x" * 120,
        V2_SIGNATURE[:5] + b"X",
        v2(1, 0x31, b"\x00" * 216),
        bytes(
            [0x0D, 0x0A, 0x0D, 0x0A, 0, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x12, 0x11, 0, 0]
        ),
    ],
    ids=[
        "plain_http",
        "v1_missing_port",
        "v1_family_mismatch",
        "v1_port_range",
        "v1_leading_zero",
        "v1_too_long",
        "v2_bad_signature",
        "v2_unix_family",
        "v2_bad_version",
    ],
)
def test_invalid_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(data)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        result = parse_proxy_header(data)
    except ProxyProtocolError:
        return
    if result is not None:
        assert 0 < result[1] <= len(data)
