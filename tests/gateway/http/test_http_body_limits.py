"""Request body limits per listener and per rule: 413 before anything is forwarded.

Content-Length over the limit is refused from the head alone; a chunked body
is cut as soon as it grows past the limit, and the upstream never sees a
complete request. Real sockets: a gateway in front of a recording upstream.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.gateway.conftest import (
    GatewayFactory,
    RawUpstream,
    Upstream,
    raw_exchange,
    simple_config,
)


def limited(port: int, *, listener: int | None = None, rule: int | None = None) -> dict[str, Any]:
    raw = simple_config([port], rule={"maxRequestBodyBytes": rule} if rule is not None else None)
    if listener is not None:
        raw["listeners"][0]["maxRequestBodyBytes"] = listener
    return raw


def post(body: bytes) -> bytes:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(
        body
    )
    return head + body


def chunked(*pieces: bytes) -> bytes:
    out = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    for piece in pieces:
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\n\r\n"


async def test_listener_limit_refuses_a_larger_content_length_before_forwarding(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    gw = await make_gateway(limited(raw_upstream.port, listener=10))
    out = await raw_exchange(gw.port, post(b"x" * 11))
    assert out.startswith(b"HTTP/1.1 413 ")
    assert b"portway-error: request_body_too_large" in out
    assert raw_upstream.received == b""
    assert (await raw_exchange(gw.port, post(b"x" * 10))).startswith(b"HTTP/1.1 200 ")


async def test_rule_limit_refuses_a_larger_content_length_before_forwarding(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    gw = await make_gateway(limited(raw_upstream.port, listener=1000, rule=5))
    out = await raw_exchange(gw.port, post(b"123456"))
    assert out.startswith(b"HTTP/1.1 413 ")
    assert raw_upstream.received == b""


async def test_chunked_body_growing_past_the_limit_is_cut_and_never_complete_upstream(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    gw = await make_gateway(limited(raw_upstream.port, rule=8))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(chunked(b"abcd")[: -len(b"0\r\n\r\n")])  # head and a first chunk
    await asyncio.sleep(0.1)
    writer.write(b"6\r\nefghij\r\n0\r\n\r\n")  # 10 bytes in all: over the limit
    await asyncio.wait_for(reader.read(), 3)  # the gateway closes the connection
    writer.close()
    await asyncio.sleep(0.05)
    body = raw_upstream.received.partition(b"\r\n\r\n")[2]
    assert b"abcd" in body  # streamed while under the limit
    assert b"efghij" not in body and not body.endswith(b"0\r\n\r\n")


async def test_chunked_body_past_the_limit_gets_413_while_the_upstream_waits(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(limited(upstream.port, rule=8))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(chunked(b"abcd")[: -len(b"0\r\n\r\n")].replace(b"POST / ", b"POST /sink "))
    await asyncio.sleep(0.1)
    writer.write(b"6\r\nefghij\r\n0\r\n\r\n")
    out = await asyncio.wait_for(reader.read(), 3)
    assert out.startswith(b"HTTP/1.1 413 ")
    writer.close()


async def test_chunked_body_within_the_limit_passes(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    gw = await make_gateway(limited(raw_upstream.port, listener=8))
    out = await raw_exchange(gw.port, chunked(b"abcd", b"efgh"))
    assert out.startswith(b"HTTP/1.1 200 ")


async def test_expect_100_continue_is_not_answered_for_a_body_over_the_limit(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    gw = await make_gateway(limited(raw_upstream.port, rule=4))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"
    )
    out = await asyncio.wait_for(reader.read(), 3)
    assert out.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in out
    writer.close()
    assert raw_upstream.received == b""
