"""Sticky canary cookies and cookie/header hash affinity, through a real gateway.

Each endpoint is its own loopback server answering with its port, so a test
sees exactly which endpoint served every request. These tests were checked by
removing each behaviour (the sticky Set-Cookie, honouring the sticky cookie,
hashing on the cookie, hashing on the header): each removal fails them.
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
async def servers() -> AsyncIterator[list[int]]:
    """Four upstreams; each answers every request with its own port."""
    runners: list[web.AppRunner] = []
    ports: list[int] = []
    for _ in range(4):
        app = web.Application()
        runner = web.AppRunner(app, access_log=None)

        async def whoami(request: web.Request) -> web.Response:
            return web.Response(text=str(request.transport.get_extra_info("sockname")[1]))  # type: ignore[union-attr]

        app.router.add_get("/{tail:.*}", whoami)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        runners.append(runner)
    yield ports
    for runner in runners:
        await runner.cleanup()


def _backend(name: str, ports: list[int], lb: dict[str, Any] | None = None) -> dict[str, Any]:
    backend: dict[str, Any] = {
        "name": name,
        "endpoints": [{"address": "127.0.0.1", "port": p} for p in ports],
    }
    if lb:
        backend["loadBalancer"] = lb
    return backend


def _config(backends: list[dict[str, Any]], rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "listeners": [{"name": "web", "protocol": "HTTP", "port": 1}],
        "backends": backends,
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "stable"}], **rule}]}],
    }


async def test_sticky_canary_sets_its_cookie_and_keeps_the_client_on_its_side(
    make_gateway: GatewayFactory, servers: list[int]
) -> None:
    stable, canary = servers[:2], servers[2:]
    rule = {
        "canary": {"backend": "canary", "percent": 50, "sticky": True, "stickyCookie": "pw-side"}
    }
    gw = await make_gateway(_config([_backend("stable", stable), _backend("canary", canary)], rule))
    sides_seen = set()
    for _ in range(12):  # fresh clients: each lands on a side and is told which
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as fresh,
            fresh.get(gw.url("/")) as resp,
        ):
            served = int(await resp.text())
            set_cookie = resp.headers.get("Set-Cookie", "")
        assert set_cookie.startswith("pw-side="), resp.headers
        side = set_cookie.split(";")[0].split("=", 1)[1]
        assert side == ("canary" if served in canary else "stable")
        sides_seen.add(side)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
            for _ in range(10):  # the cookie keeps the client there
                async with client.get(gw.url("/"), headers={"Cookie": f"pw-side={side}"}) as r:
                    assert int(await r.text()) in (canary if side == "canary" else stable)
                    assert "Set-Cookie" not in r.headers
    assert sides_seen == {"stable", "canary"}


async def _served_by(gw_url: str, headers: dict[str, str], times: int = 6) -> set[int]:
    seen = set()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        for _ in range(times):
            async with client.get(gw_url, headers=headers) as resp:
                seen.add(int(await resp.text()))
    return seen


@pytest.mark.parametrize("policy", ["ring_hash", "maglev"])
async def test_cookie_hash_keeps_each_cookie_on_one_endpoint(
    make_gateway: GatewayFactory, servers: list[int], policy: str
) -> None:
    lb = {"policy": policy, "hashOn": {"source": "cookie", "name": "session"}}
    gw = await make_gateway(_config([_backend("stable", servers, lb)], {}))
    pinned = []
    for user in range(12):
        seen = await _served_by(gw.url("/"), {"Cookie": f"other=x; session=user-{user}"})
        assert len(seen) == 1, f"session user-{user} went to {seen}"
        pinned.append(seen.pop())
    assert len(set(pinned)) >= 2, "every session on one endpoint: the cookie is not hashed"


@pytest.mark.parametrize("policy", ["ring_hash", "maglev"])
async def test_header_hash_keeps_each_user_on_one_endpoint(
    make_gateway: GatewayFactory, servers: list[int], policy: str
) -> None:
    lb = {"policy": policy, "hashOn": {"source": "header", "name": "x-user"}}
    gw = await make_gateway(_config([_backend("stable", servers, lb)], {}))
    pinned = []
    for user in range(12):
        seen = await _served_by(gw.url("/"), {"X-User": f"user-{user}"})
        assert len(seen) == 1, f"x-user user-{user} went to {seen}"
        pinned.append(seen.pop())
    assert len(set(pinned)) >= 2, "every user on one endpoint: the header is not hashed"
