"""Keep-alive idle timeouts of client connections, swept by the loop's one DeadlineWatch."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.http.deadline_watch import deadline_watch
from tests.gateway.conftest import GatewayFactory, Upstream, simple_config

_GET = b"GET /slow?s=%s HTTP/1.1\r\nHost: a\r\n\r\n"


SWEEP_S = 0.05


@pytest.fixture(autouse=True)
async def fast_sweep() -> None:
    """The test loop's watch (the gateway's, made in-process on the same loop) sweeps
    and looks for connections to shed every `SWEEP_S`."""
    watch = deadline_watch(asyncio.get_running_loop())
    watch.idle_sweep_s = SWEEP_S
    watch.shed_s = SWEEP_S


async def _closed_after(reader: asyncio.StreamReader, limit_s: float) -> float:
    """Seconds until the gateway closes the connection (reading whatever comes first)."""
    start = time.monotonic()
    while await asyncio.wait_for(reader.read(65536), limit_s):
        pass
    return time.monotonic() - start


async def test_connection_idle_after_a_request_is_closed_after_the_rules_idle_timeout(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    rule = {"timeouts": {"idle": "300ms"}}
    gw = await make_gateway(simple_config([upstream.port], rule=rule))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(_GET % b"0")
    head = await asyncio.wait_for(reader.readuntil(b"slow"), 3)
    assert head.startswith(b"HTTP/1.1 200 ")
    waited = await _closed_after(reader, 3)
    writer.close()
    assert 0.25 <= waited < 1.5
    assert not gw.ctx.connections


async def test_connection_that_never_sends_a_request_is_closed_after_first_request_timeout(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(
        simple_config([upstream.port], gateway={"firstRequestTimeout": "200ms"})
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")  # half a head is still no request
    waited = await _closed_after(reader, 3)
    writer.close()
    assert 0.15 <= waited < 1.5


async def test_a_request_in_progress_is_not_cut_by_the_idle_timeout(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    rule = {"timeouts": {"idle": "100ms"}}
    gw = await make_gateway(
        simple_config([upstream.port], rule=rule, gateway={"firstRequestTimeout": "100ms"})
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    for _ in range(2):  # the second request starts after the first one's idle clock ran a bit
        writer.write(_GET % b"0.4")
        body = await asyncio.wait_for(reader.readuntil(b"slow"), 3)
        assert body.startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(0.03)
    writer.close()


@pytest.mark.parametrize("native", [False, True], ids=["loop", "native"])
async def test_an_idle_keep_alive_connection_sheds_its_parser_and_serves_the_next_request(
    make_gateway: GatewayFactory, upstream: Upstream, native: bool
) -> None:
    """The sweep drops an idle connection's parser (memory per idle connection); the
    next request on it makes a new one and is answered as the first was. A connection
    holding half a head keeps its parser: the rest of the head still parses. On the
    native lane a plain head never makes a Python parser: the half head waits in C."""
    gw = await make_gateway(simple_config([upstream.port], gateway={"nativeSockets": native}))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    half_reader, half_writer = await asyncio.open_connection("127.0.0.1", gw.port)
    half_writer.write(b"GET /slow?s=0 HTTP/1.1\r\nHo")
    for n in (b"0", b"0"):
        writer.write(_GET % n)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        await asyncio.sleep(SWEEP_S * 4)
        states = sorted((conn.parser is None) for conn in gw.ctx.connections)  # type: ignore[attr-defined]
        # the idle one shed, the one mid-head did not (native: neither has one)
        assert states == ([True, True] if native else [False, True])
    half_writer.write(b"st: a\r\n\r\n")
    head = await asyncio.wait_for(half_reader.readuntil(b"\r\n\r\n"), 3)
    assert head.startswith(b"HTTP/1.1 200 ")
    writer.close()
    half_writer.close()
