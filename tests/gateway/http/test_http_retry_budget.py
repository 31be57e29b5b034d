"""The retry budget refuses retries beyond it, through a real gateway.

Checked by removing the budget check from `retry_allowed` (every failed try
then retried): the first test fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.gateway.conftest import GatewayFactory

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def failing() -> AsyncIterator[tuple[list[int], list[int]]]:
    """Two upstreams answering 502 to everything; the list counts the requests they saw."""
    hits: list[int] = []
    runners: list[web.AppRunner] = []
    ports: list[int] = []
    for _ in range(2):

        async def bad_gateway(request: web.Request) -> web.Response:
            hits.append(1)
            return web.Response(status=502, text="down")

        app = web.Application()
        app.router.add_get("/{tail:.*}", bad_gateway)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        runners.append(runner)
    yield ports, hits
    for runner in runners:
        await runner.cleanup()


def _config(ports: list[int], budget: dict[str, Any]) -> dict[str, Any]:
    retry = {"attempts": 1, "on": ["gateway-error"], "backoffBase": "1ms", "budget": budget}
    return {
        "listeners": [{"name": "web", "protocol": "HTTP", "port": 1}],
        "backends": [
            {
                "name": "app",
                "endpoints": [{"address": "127.0.0.1", "port": p} for p in ports],
                # answers that fail are not to take endpoints out: this is about the budget
                "outlierDetection": {"enabled": False},
            }
        ],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "app"}], "retry": retry}]}],
    }


async def _requests(url: str, n: int) -> list[int]:
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            async with session.get(url) as resp:
                statuses.append(resp.status)
    return statuses


async def test_retries_beyond_the_budget_are_refused(
    make_gateway: GatewayFactory, failing: tuple[list[int], list[int]]
) -> None:
    ports, hits = failing
    gw = await make_gateway(_config(ports, {"percent": 0, "minConcurrency": 0}))
    assert await _requests(gw.url("/"), 10) == [502] * 10
    assert len(hits) == 10  # one try each: no room for a retry


async def test_retries_within_the_budget_go_to_another_endpoint(
    make_gateway: GatewayFactory, failing: tuple[list[int], list[int]]
) -> None:
    ports, hits = failing
    gw = await make_gateway(_config(ports, {"percent": 100, "minConcurrency": 5}))
    assert await _requests(gw.url("/"), 10) == [502] * 10
    assert len(hits) == 20  # every request tried twice
