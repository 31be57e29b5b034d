"""Upstream connection pools: reuse, limits, eviction, and what is never reused."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from gateway.routing.endpoints import Endpoint
from gateway.upstream.pool import ConnectFailure, PoolSet
from tests.gateway.conftest import GatewayFactory, Upstream, free_port, simple_config


async def test_concurrent_requests_beyond_max_connections_wait_for_a_slot(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    cfg = simple_config([upstream.port])
    cfg["backends"][0]["circuitBreaker"] = {"maxConnections": 1}
    gw = await make_gateway(cfg)
    async with aiohttp.ClientSession() as s:

        async def one(i: int) -> tuple[int, int]:
            async with s.get(gw.url(f"/slow?s=0.05&i={i}")) as r:
                await r.read()
                return r.status, 0

        results = await asyncio.gather(*(one(i) for i in range(4)))
        async with s.get(gw.url("/e")) as r:
            port_after = (await r.json())["peer_port"]
    assert [status for status, _ in results] == [200] * 4
    pool = gw.ctx.pools.pools[f"c0/127.0.0.1:{upstream.port}"]
    assert pool.total == 1 and port_after > 0


async def test_circuit_open_when_pending_queue_is_full(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    cfg = simple_config([upstream.port])
    cfg["backends"][0]["circuitBreaker"] = {"maxConnections": 1, "maxPendingRequests": 0}
    gw = await make_gateway(cfg)
    async with aiohttp.ClientSession() as s:

        async def one() -> tuple[int, str]:
            async with s.get(gw.url("/slow?s=0.2")) as r:
                await r.read()
                return r.status, r.headers.get("portway-error", "")

        results = sorted(await asyncio.gather(one(), one()))
    assert results == [(200, ""), (503, "overflow")]


async def test_connection_with_unread_response_is_not_reused(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /stream?n=50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readexactly(100000)
    writer.transport.abort()
    await asyncio.sleep(0.2)
    pool = gw.ctx.pools.pools[f"c0/127.0.0.1:{upstream.port}"]
    assert pool.idle == [] and pool.total == 0
    assert gw.ctx.state.in_flight == {}


async def test_stale_pooled_connection_is_retried_on_a_fresh_one(
    make_gateway: GatewayFactory,
) -> None:
    async def one_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()  # second request on this connection: reset, no answer

    server = await asyncio.start_server(one_per_connection, "127.0.0.1", 0)
    gw = await make_gateway(simple_config([server.sockets[0].getsockname()[1]]))
    async with aiohttp.ClientSession() as s:
        for _ in range(5):
            async with s.get(gw.url("/")) as r:
                assert r.status == 200
    server.close()


async def test_idle_connections_are_evicted_by_the_timer(upstream: Upstream) -> None:
    loop = asyncio.get_running_loop()
    pools = PoolSet(loop, idle_timeout_s=0.1)
    pool = pools.pool(Endpoint("127.0.0.1", upstream.port, "c"), None)
    conn = await pool.connect(1.0)
    pool.release(conn)
    assert pool.take_idle() is conn
    pool.release(conn)
    await asyncio.sleep(0.35)
    assert conn.closed
    assert pools.pools == {}
    pools.close()


async def test_idle_connections_beyond_max_idle_are_closed(upstream: Upstream) -> None:
    loop = asyncio.get_running_loop()
    pools = PoolSet(loop, max_idle=2)
    pool = pools.pool(Endpoint("127.0.0.1", upstream.port, "c"), None)
    conns = [await pool.connect(1.0) for _ in range(3)]
    for conn in conns:
        pool.release(conn)
    assert len(pool.idle) == 2 and conns[2].closed
    await asyncio.sleep(0.05)
    assert pool.total == 2
    pools.close()


async def test_connect_to_closed_port_is_a_typed_connect_failure() -> None:
    pools = PoolSet(asyncio.get_running_loop())
    pool = pools.pool(Endpoint("127.0.0.1", free_port(), "c"), None)
    try:
        await pool.connect(1.0)
    except ConnectFailure as exc:
        assert exc.cause == "upstream_connect_failure"
    else:
        raise AssertionError("connect to a closed port succeeded")
    assert pool.total == 0
    pools.close()
