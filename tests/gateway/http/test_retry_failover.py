"""Failover by retry: requests that hit dead NodePorts are moved, not failed."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.gateway.conftest import GatewayFactory, Upstream, free_port, simple_config


async def test_many_concurrent_clients_on_dead_endpoints_see_no_failure(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """Connect failures are retried outside the retry budget (no upstream saw the request).

    With 8 clients and two of three endpoints refusing connections, most
    requests need a retry at the same moment: far more than the budget's
    min_concurrency of 3. Each must still succeed.
    """
    rule = {"retry": {"attempts": 3, "backoffBase": "5ms", "backoffMax": "20ms"}}
    gw = await make_gateway(simple_config([free_port(), free_port(), upstream.port], rule=rule))
    statuses: list[int] = []

    async def client() -> None:
        async with aiohttp.ClientSession() as s:
            for _ in range(25):
                async with s.get(gw.url("/f")) as r:
                    await r.read()
                    statuses.append(r.status)

    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(8))), 30)
    assert statuses == [200] * 200
    assert gw.ctx.pools.active_retries == 0


async def test_a_burst_of_resets_from_one_node_is_retried_elsewhere(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """Every in-flight request to one node fails at once: all are moved, none answered 502.

    The node accepts and reads 60 requests, then resets every connection
    together (a node restarting under load). 60 retries at once is twenty
    times the budget's `min_concurrency` and more than 20 % of what is in
    flight; the short-window allowance and outlier ejection let them go.
    """
    held: list[asyncio.StreamWriter] = []
    got_all = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        held.append(writer)
        if len(held) >= 60:
            got_all.set()
        await asyncio.sleep(30)

    bad = await asyncio.start_server(hold, "127.0.0.1", 0)
    bad_port = bad.sockets[0].getsockname()[1]
    rule = {"retry": {"attempts": 2, "on": ["reset", "gateway-error"]}}
    config = simple_config([bad_port, upstream.port], rule=rule)
    config["backends"][0]["loadBalancer"] = {"policy": "random"}
    gw = await make_gateway(config)
    # every request lands on the bad node first: the good one is added after warm-up
    gw.ctx.state.set_draining(gw.ctx.table.backends["app"].endpoints[1].key, True)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

        async def one() -> int:
            async with s.get(gw.url("/burst")) as r:
                await r.read()
                return r.status

        tasks = [asyncio.create_task(one()) for _ in range(60)]
        await asyncio.wait_for(got_all.wait(), 10)
        gw.ctx.state.set_draining(gw.ctx.table.backends["app"].endpoints[1].key, False)
        for w in held:
            w.transport.abort()
        statuses = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    bad.close()
    assert statuses == [200] * 60
