"""The HTTP proxy's telemetry: metrics on the cheap path, access log and trace headers."""

from __future__ import annotations

import io
import json

import aiohttp

from gateway.ops.accesslog import AccessLog
from gateway.ops.observer import GatewayObserver
from tests.gateway.conftest import GatewayFactory, Upstream, simple_config

_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_requests_are_counted_without_log_or_trace(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    observer = GatewayObserver()
    gw.ctx.observer = observer
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.get(gw.url("/m")) as r:
                assert r.status == 200
                await r.read()
        async with s.get(gw.url("/status/503")) as r:
            await r.read()
    assert observer.stats.requests[("r", "app", "c0", 200)] == 3
    assert observer.stats.requests[("r", "app", "c0", 503)] == 1
    assert sum(observer.stats.durations["r"][:-1]) == 4
    assert observer.in_flight == 0


async def test_client_traceparent_is_forwarded_once_when_tracing_is_off(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    observer = GatewayObserver()
    gw.ctx.observer = observer
    headers = {"traceparent": _PARENT, "tracestate": "a=1"}
    async with aiohttp.ClientSession() as s, s.get(gw.url("/t"), headers=headers) as r:
        info = await r.json()
    sent = [v for k, v in info["headers"] if k.lower() == "traceparent"]
    assert sent == [_PARENT]
    assert [v for k, v in info["headers"] if k.lower() == "tracestate"] == ["a=1"]
    assert observer.stats.requests[("r", "app", "c0", 200)] == 1
    assert observer.in_flight == 0


async def test_access_log_lines_carry_route_upstream_and_trace_id(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    stream = io.BytesIO()
    observer = GatewayObserver(access_log=AccessLog(stream))
    gw.ctx.observer = observer
    headers = {"traceparent": _PARENT, "User-Agent": "t/1"}
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url("/logged?x=1"), headers=headers) as r:
            await r.read()
        async with s.get(gw.url("/plain")) as r:
            await r.read()
    assert observer.access_log is not None
    observer.access_log.flush()
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [line["path"] for line in lines] == ["/logged", "/plain"]
    first = lines[0]
    assert first["response_code"] == 200 and first["route_name"] == "r"
    assert first["upstream_host"] == f"127.0.0.1:{upstream.port}"
    assert first["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert first["user_agent"] == "t/1" and first["x_request_id"]
    assert observer.in_flight == 0
