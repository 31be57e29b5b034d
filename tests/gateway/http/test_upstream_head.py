"""Upstream request heads: a keep-alive connection that repeats requests reuses its last
plain head, yet every request still gets its own head and request id."""

from __future__ import annotations

from typing import Any

import aiohttp
from pydantic import TypeAdapter

from gateway.config.model import GatewayConfig
from gateway.context import GatewayContext
from gateway.http.exchange import Exchange
from gateway.http.plan import RulePlan, compile_http_table
from gateway.http.upstream_head import UpstreamHeads
from tests.gateway.conftest import GatewayFactory, Upstream, simple_config


def _plan(rule: dict[str, Any] | None = None) -> tuple[GatewayContext, RulePlan]:
    config = TypeAdapter(GatewayConfig).validate_python(simple_config([8080], rule=rule))
    table = compile_http_table(config, [])
    plan = table.routes[0].rules[0].plan
    assert isinstance(plan, RulePlan)
    return GatewayContext(table=table, settings=config.gateway), plan


def _exchange(path: bytes = b"/a", headers: list[tuple[bytes, bytes]] | None = None) -> Exchange:
    hdrs = [(b"Host", b"example.com"), (b"Accept", b"*/*")] if headers is None else headers
    return Exchange(b"GET", path, b"", "1.1", b"example.com", hdrs, b"", None)


def _heads(ctx: GatewayContext) -> UpstreamHeads:
    return UpstreamHeads(ctx, "192.0.2.7", b"http", False, None, b"")


def test_a_repeated_request_reuses_its_head_with_a_fresh_request_id() -> None:
    ctx, plan = _plan()
    heads = _heads(ctx)
    first, again = _exchange(), _exchange()
    heads.fill(first, plan)
    assert heads.plan is plan, "a plain request is memoised"
    heads.fill(again, plan)
    assert again.line == first.line == b"GET /a HTTP/1.1\r\n"
    assert first.request_id != again.request_id
    assert again.head == first.head.replace(first.request_id, again.request_id)
    assert b"X-Request-Id: " + again.request_id + b"\r\n" in again.head
    assert b"X-Forwarded-For: 192.0.2.7\r\n" in again.head
    assert again.head.endswith(again.via + b"\r\n") and again.via.startswith(b"Via: 1.1 ")


def test_a_different_path_or_header_gets_a_head_of_its_own() -> None:
    ctx, plan = _plan()
    heads = _heads(ctx)
    heads.fill(_exchange(), plan)
    other_path = _exchange(b"/b")
    heads.fill(other_path, plan)
    assert other_path.line == b"GET /b HTTP/1.1\r\n"
    extra = _exchange(headers=[(b"Host", b"example.com"), (b"X-Try", b"yes")])
    heads.fill(extra, plan)
    assert b"X-Try: yes\r\n" in extra.head and b"Accept" not in extra.head


def test_a_client_request_id_or_chunked_body_is_forwarded_but_never_memoised() -> None:
    ctx, plan = _plan()
    heads = _heads(ctx)
    own = _exchange(headers=[(b"Host", b"example.com"), (b"X-Request-Id", b"client-1")])
    own.request_id = b"client-1"
    heads.fill(own, plan)
    assert own.request_id == b"client-1" and own.head.count(b"X-Request-Id") == 1
    chunked = _exchange()
    chunked.chunked = True
    heads.fill(chunked, plan)
    assert b"Transfer-Encoding: chunked\r\n" in chunked.head
    assert heads.plan is None
    plain = _exchange()
    heads.fill(plain, plan)
    assert b"Transfer-Encoding" not in plain.head


def test_the_rule_s_path_rewrite_and_header_edits_shape_the_head() -> None:
    rule = {
        "filters": {
            "urlRewrite": {"replacePrefixMatch": "/v2"},
            "requestHeaders": {"add": [{"name": "X-Env", "value": "prod"}], "remove": ["Accept"]},
        },
        "matches": [{"path": {"type": "PathPrefix", "value": "/a"}}],
    }
    ctx, plan = _plan(rule)
    heads = _heads(ctx)
    for _ in range(2):  # built, then reused
        ex = _exchange(b"/a/x")
        heads.fill(ex, plan)
        assert ex.line == b"GET /v2/x HTTP/1.1\r\n"
        assert b"x-env: prod\r\n" in ex.head.lower() and b"accept" not in ex.head.lower()
        assert heads.plan is plan


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
