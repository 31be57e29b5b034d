"""The filter chain over real sockets: CORS, mirrors, backendRef header modifiers,
redirect-only rules, and the gateway's own answers framed exactly (HEAD, 204)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import aiohttp

from gateway.http.filters.mirror import MIRRORS
from gateway.http.plan import RulePlan
from gateway.ops.metrics import MetricsSnapshot, RequestStats, render
from tests.gateway.conftest import GatewayFactory, Upstream, raw_exchange, simple_config


async def test_cors_preflight_is_answered_without_reaching_upstream(
    make_gateway: GatewayFactory, raw_upstream: Any
) -> None:
    rule = {
        "filters": {
            "cors": {
                "allowOrigins": ["https://*.example.com"],
                "allowMethods": ["GET", "PUT"],
                "allowHeaders": ["X-Token"],
                "maxAge": 60,
            }
        }
    }
    gw = await make_gateway(simple_config([raw_upstream.port], rule=rule))
    out = await raw_exchange(
        gw.port,
        b"OPTIONS /x HTTP/1.1\r\nHost: h\r\nOrigin: https://app.example.com\r\n"
        b"Access-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n",
    )
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Access-Control-Allow-Origin: https://app.example.com" in head
    assert b"Access-Control-Allow-Methods: GET, PUT" in head
    assert b"Access-Control-Max-Age: 60" in head
    assert body == b""
    assert raw_upstream.connections == 0


async def test_cors_actual_request_gets_allow_origin_on_the_upstream_answer(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    rule = {"filters": {"cors": {"allowOrigins": ["https://a.io"], "exposeHeaders": ["X-N"]}}}
    gw = await make_gateway(simple_config([upstream.port], rule=rule))
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url("/echo"), headers={"Origin": "https://a.io"}) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "https://a.io"
            assert r.headers["Access-Control-Expose-Headers"] == "X-N"
        async with s.get(gw.url("/echo"), headers={"Origin": "https://b.io"}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers


async def test_mirror_never_delays_the_main_request(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    hung: list[asyncio.StreamWriter] = []
    got = asyncio.Event()

    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        got.set()
        await asyncio.sleep(30)

    server = await asyncio.start_server(never_answers, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = simple_config([upstream.port], rule={"filters": {"mirrors": [{"backend": "shadow"}]}})
    config["backends"].append(
        {"name": "shadow", "endpoints": [{"address": "127.0.0.1", "port": port}]}
    )
    config["routes"][0]["rules"][0]["timeouts"] = {"request": "2s"}
    gw = await make_gateway(config)
    sent_before = MIRRORS.in_flight
    try:
        async with aiohttp.ClientSession() as s:
            started = time.monotonic()
            async with s.get(gw.url("/echo")) as r:
                assert r.status == 200
                assert json.loads(await r.read())["path"] == "/echo"
            assert time.monotonic() - started < 1.0
            await asyncio.wait_for(got.wait(), 2)
            assert MIRRORS.in_flight == sent_before + 1
    finally:
        server.close()
        for writer in hung:
            writer.close()


async def test_mirror_copies_reach_the_mirror_backend(
    make_gateway: GatewayFactory, upstream: Upstream, raw_upstream: Any
) -> None:
    rule = {
        "filters": {
            "mirrors": [{"backend": "shadow"}],
            "requestHeaders": {"set": [{"name": "X-Rule", "value": "1"}]},
        }
    }
    config = simple_config([upstream.port], rule=rule)
    config["backends"].append(
        {"name": "shadow", "endpoints": [{"address": "127.0.0.1", "port": raw_upstream.port}]}
    )
    gw = await make_gateway(config)
    async with aiohttp.ClientSession() as s, s.post(gw.url("/m"), data=b"hello") as r:
        assert r.status == 200
    for _ in range(100):
        if b"hello" in raw_upstream.received:
            break
        await asyncio.sleep(0.01)
    copy = bytes(raw_upstream.received)
    assert copy.startswith(b"POST /m HTTP/1.1\r\n")
    assert b"x-rule: 1\r\n" in copy and b"Connection: close\r\n" in copy
    assert copy.endswith(b"\r\n\r\nhello")


async def test_backend_ref_header_modifiers_apply_after_the_rules(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    config = simple_config([upstream.port])
    config["routes"][0]["rules"][0] = {
        "backendRefs": [
            {
                "name": "app",
                "filters": {
                    "requestHeaders": {"set": [{"name": "X-Env", "value": "backend"}]},
                    "responseHeaders": {"add": [{"name": "X-From", "value": "app"}]},
                },
            }
        ],
        "filters": {"requestHeaders": {"set": [{"name": "X-Env", "value": "rule"}]}},
    }
    gw = await make_gateway(config)
    async with aiohttp.ClientSession() as s, s.get(gw.url("/echo")) as r:
        assert r.headers["X-From"] == "app"
        headers = json.loads(await r.read())["headers"]
    assert [v for k, v in headers if k.lower() == "x-env"] == ["backend"]


async def test_redirect_only_rule_with_prefix_replacement(make_gateway: GatewayFactory) -> None:
    config = simple_config([1])
    config["routes"][0]["rules"][0] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
        "filters": {"redirect": {"replacePrefixMatch": "/new", "statusCode": 308}},
    }
    gw = await make_gateway(config)
    out = await raw_exchange(
        gw.port, b"GET /old/a?q=1 HTTP/1.1\r\nHost: h:8080\r\nConnection: close\r\n\r\n"
    )
    assert out.startswith(b"HTTP/1.1 308 ")
    assert b"Location: http://h:8080/new/a?q=1\r\n" in out
    assert out.endswith(b"content-length: 0\r\nconnection: close\r\n\r\n")


async def test_head_to_unknown_host_gets_404_without_body(make_gateway: GatewayFactory) -> None:
    config = simple_config([1])
    config["routes"][0]["hostnames"] = ["known.example.com"]
    gw = await make_gateway(config)
    out = await raw_exchange(
        gw.port, b"HEAD / HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n"
    )
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ")
    assert b"content-length: 18\r\n" in head, "the length a GET's body would have"
    assert body == b""


async def test_head_to_a_dead_upstream_gets_503_without_body(
    make_gateway: GatewayFactory,
) -> None:
    from tests.gateway.conftest import free_port

    gw = await make_gateway(simple_config([free_port()]))
    out = await raw_exchange(gw.port, b"HEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and body == b""


async def test_relayed_204_and_304_have_no_body(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    out = await raw_exchange(
        gw.port,
        b"GET /status/204 HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /status/304 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    first, _, rest = out.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 204 ")
    assert b"Transfer-Encoding" not in first
    assert rest.startswith(b"HTTP/1.1 304 ")
    assert rest.endswith(b"\r\n\r\n")


async def test_mirror_outcomes_are_counted_per_rule_and_exported_as_metrics(
    make_gateway: GatewayFactory, upstream: Upstream, raw_upstream: Any
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the copy's connect is refused
    rule = {
        "name": "mirrored",
        "filters": {"mirrors": [{"backend": "shadow"}, {"backend": "gone"}]},
    }
    config = simple_config([upstream.port], rule=rule)
    config["backends"] += [
        {"name": "shadow", "endpoints": [{"address": "127.0.0.1", "port": raw_upstream.port}]},
        {"name": "gone", "endpoints": [{"address": "127.0.0.1", "port": refused_port}]},
    ]
    gw = await make_gateway(config)
    sent = MIRRORS.counts_for("mirrored", "shadow")
    failed = MIRRORS.counts_for("mirrored", "gone")
    before = (sent.sent, failed.failed)
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.get(gw.url("/m")) as r:
                assert r.status == 200
    for _ in range(200):
        if (sent.sent, failed.failed) == (before[0] + 3, before[1] + 3):
            break
        await asyncio.sleep(0.01)
    assert (sent.sent, failed.failed) == (before[0] + 3, before[1] + 3)
    text = render(MetricsSnapshot.capture(RequestStats(), mirrors=MIRRORS.totals())).decode()
    assert (
        f'portway_mirror_requests_total{{backend="shadow",result="sent",rule="mirrored"}} '
        f"{float(sent.sent)}"
    ) in text
    assert (
        f'portway_mirror_requests_total{{backend="gone",result="failed",rule="mirrored"}} '
        f"{float(failed.failed)}"
    ) in text


async def test_a_mirror_at_zero_percent_is_not_built_and_copies_nothing(
    make_gateway: GatewayFactory, upstream: Upstream, raw_upstream: Any
) -> None:
    rule = {"filters": {"mirrors": [{"backend": "shadow", "percent": 0}]}}
    config = simple_config([upstream.port], rule=rule)
    config["backends"].append(
        {"name": "shadow", "endpoints": [{"address": "127.0.0.1", "port": raw_upstream.port}]}
    )
    gw = await make_gateway(config)
    table = gw.ctx.table
    assert table is not None
    plan = table.routes[0].rules[0].plan
    assert isinstance(plan, RulePlan) and plan.forward_filters == ()
    async with aiohttp.ClientSession() as s:
        for _ in range(5):
            async with s.get(gw.url("/m")) as r:
                assert r.status == 200
    await asyncio.sleep(0.1)
    assert raw_upstream.connections == 0


async def test_response_header_modifier_drops_as_the_head_is_parsed_per_rule(
    make_gateway: GatewayFactory,
) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nServer: up\r\nX-Up: from-upstream\r\nx-other: 1\r\n"
        b"Content-Length: 2\r\n\r\nok"
    )

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    modifier = {"set": [{"name": "X-Up", "value": "gw"}], "remove": ["server", "X-OTHER"]}
    config = simple_config([port])
    config["routes"][0]["rules"] = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/drop"}}],
            "backendRefs": [{"name": "app"}],
            "filters": {"responseHeaders": modifier},
        },
        {"backendRefs": [{"name": "app"}]},
    ]
    gw = await make_gateway(config)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        heads = []
        for path in (b"/drop", b"/keep", b"/drop", b"/keep"):  # one client and upstream connection
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
            assert await reader.readexactly(2) == b"ok"
            heads.append(head.lower())
        writer.close()
    finally:
        server.close()
    for dropped in (heads[0], heads[2]):
        assert b"x-up: gw\r\n" in dropped and b"from-upstream" not in dropped
        assert b"server:" not in dropped and b"x-other" not in dropped
    for kept in (heads[1], heads[3]):
        assert b"x-up: from-upstream\r\n" in kept and b"server: up\r\n" in kept
        assert b"x-other: 1\r\n" in kept
    pools = gw.ctx.pools
    assert pools is not None
    assert sum(pool.total for pool in pools.pools.values()) == 1
