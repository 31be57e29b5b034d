"""A keep-alive connection that repeats requests: every request still gets its own head."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.gateway.conftest import GatewayFactory, Upstream, simple_config


def _header(info: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in info["headers"] if k.lower() == name]


async def test_repeated_and_alternating_requests_keep_their_targets_and_ids(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    plan = ["/a", "/b", "/a", "/a?x=1", "/a", "/a"]
    seen: list[tuple[str, str, list[str]]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for i, path in enumerate(plan):
            extra = {"x-try": "yes"} if i == 4 else {}
            async with s.get(gw.url(path), headers=extra) as r:
                info = await r.json()
            seen.append(
                (info["path"], ",".join(_header(info, "x-try")), _header(info, "x-request-id"))
            )
    assert [p for p, _, _ in seen] == plan
    assert [t for _, t, _ in seen] == ["", "", "", "", "yes", ""]
    ids = [ids[0] for _, _, ids in seen if len(ids) == 1]
    assert len(ids) == len(plan) and len(set(ids)) == len(plan), "one fresh id per request"
