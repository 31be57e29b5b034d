"""Circuit breakers: every limit enforced, overflow answered at once and counted."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from hypothesis import given
from hypothesis import strategies as st

from gateway.upstream.breaker import BackendBreakers
from tests.gateway.conftest import GatewayFactory, Upstream, free_port, simple_config


def test_requests_beyond_the_limit_overflow_and_leave_symmetrically() -> None:
    b = BackendBreakers()
    assert [b.enter_request("api", 2) for _ in range(3)] == [True, True, False]
    assert b.overflows[("api", "max_requests")] == 1
    for _ in range(3):
        b.leave_request("api")
    assert b.requests == {}


def test_retries_beyond_the_limit_are_refused_and_not_counted_in() -> None:
    b = BackendBreakers()
    assert [b.enter_retry("api", 1) for _ in range(3)] == [True, False, False]
    assert b.retries == {"api": 1} and b.overflows[("api", "max_retries")] == 2


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=200))
def test_counts_never_go_negative_and_return_to_zero(ops: list[tuple[bool, int]]) -> None:
    b = BackendBreakers()
    held: list[str] = []
    for enter, i in ops:
        name = f"b{i}"
        if enter:
            b.enter_request(name, 5)
            held.append(name)
        elif name in held:
            held.remove(name)
            b.leave_request(name)
        assert all(n > 0 for n in b.requests.values())
        assert b.requests.get(name, 0) == held.count(name)


async def test_max_requests_answers_overflow_at_once(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    cfg = simple_config([upstream.port])
    cfg["backends"][0]["circuitBreaker"] = {"maxRequests": 2}
    gw = await make_gateway(cfg)
    async with aiohttp.ClientSession() as s:

        async def one(path: str) -> tuple[int, str, float]:
            started = time.monotonic()
            async with s.get(gw.url(path)) as r:
                await r.read()
                return r.status, r.headers.get("portway-error", ""), time.monotonic() - started

        slow = [asyncio.create_task(one("/slow?s=0.5")) for _ in range(2)]
        await asyncio.sleep(0.15)
        status, cause, took = await one("/fast")
        assert (status, cause) == (503, "overflow") and took < 0.2
        assert [r[0] for r in await asyncio.gather(*slow)] == [200, 200]
        assert (await one("/after"))[0] == 200
    assert gw.ctx.breakers.overflows[("app", "max_requests")] == 1
    assert gw.ctx.breakers.requests == {}


async def test_max_retries_caps_requests_retrying_at_once(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """Two dead endpoints before the live one; only one request may be retrying at a time."""
    cfg = simple_config([free_port(), upstream.port], rule={"retry": {"attempts": 2}})
    cfg["backends"][0]["circuitBreaker"] = {"maxRetries": 1}
    cfg["backends"][0]["outlierDetection"] = {"enabled": False}
    cfg["backends"][0]["loadBalancer"] = {"policy": "round_robin"}
    gw = await make_gateway(cfg)
    gw.ctx.breakers.retries["app"] = 1  # one request is retrying right now
    async with aiohttp.ClientSession() as s:
        statuses = []
        for _ in range(4):
            async with s.get(gw.url("/x")) as r:
                await r.read()
                statuses.append(r.status)
    assert statuses.count(503) == 2 and statuses.count(200) == 2
    assert gw.ctx.breakers.overflows[("app", "max_retries")] == 2
    gw.ctx.breakers.retries.clear()


async def test_counts_return_to_zero_when_clients_leave_or_tries_time_out(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """A leaked count would turn into overflow for everyone later: every exit path leaves."""
    rule = {"retry": {"attempts": 1, "perTryTimeout": "50ms"}, "timeouts": {"request": "300ms"}}
    gw = await make_gateway(simple_config([upstream.port, free_port()], rule=rule))
    _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /slow?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.02)
    writer.transport.abort()  # the client leaves mid-request
    async with aiohttp.ClientSession() as s:
        for _ in range(4):  # per-try timeouts, retries, the request deadline
            async with s.get(gw.url("/slow?s=1")) as r:
                await r.read()
    await asyncio.sleep(0.05)
    assert gw.ctx.breakers.requests == {} and gw.ctx.breakers.retries == {}
    assert gw.ctx.pools.active_requests == 0 and gw.ctx.pools.active_retries == 0
