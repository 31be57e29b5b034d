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
