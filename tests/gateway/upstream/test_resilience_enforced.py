"""healthCheck and outlierDetection blocks change what a running gateway does."""

from __future__ import annotations

import asyncio
import contextlib
import json
from random import Random
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.upstream.health import ProbeKind, ProbeSpec
from gateway.upstream.health_driver import HealthDriver
from gateway.upstream.probe import run_probe
from tests.gateway.conftest import (
    GatewayFactory,
    ProbedUpstream,
    Upstream,
    free_port,
    simple_config,
)


async def served_by(gw_url: str, n: int) -> list[str]:
    out = []
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            async with s.get(gw_url) as r:
                out.append(f"{r.status}:{await r.text()}"[:16])
    return out


async def test_a_failing_health_check_takes_the_endpoint_out_and_a_passing_one_back(
    make_gateway: GatewayFactory, upstream: Upstream, probed: ProbedUpstream
) -> None:
    cfg = simple_config([probed.port, upstream.port])
    cfg["backends"][0]["healthCheck"] = {
        "path": "/healthz",
        "host": "probe.example",
        "interval": "100ms",
        "timeout": "500ms",
        "healthyThreshold": 2,
        "unhealthyThreshold": 2,
    }
    gw = await make_gateway(cfg)
    driver = HealthDriver(gw.ctx, rng=Random(3))
    driver.start()
    try:
        key = f"c0/127.0.0.1:{probed.port}"
        probed.health = 503
        for _ in range(100):
            if key in gw.ctx.state.unhealthy:
                break
            await asyncio.sleep(0.02)
        assert key in gw.ctx.state.unhealthy
        assert "status 503" in driver.reasons[key]
        assert probed.probe_hosts == {"probe.example"}
        assert not any("probed" in r for r in await served_by(gw.url("/x"), 20))
        probed.health = 200
        for _ in range(100):
            if key not in gw.ctx.state.unhealthy:
                break
            await asyncio.sleep(0.02)
        assert key not in gw.ctx.state.unhealthy
        assert any("probed" in r for r in await served_by(gw.url("/x"), 20))
        assert driver.stats.health_changes[("app", "unhealthy")] == 1
        assert driver.stats.health_changes[("app", "healthy")] == 1
    finally:
        await driver.stop()


async def test_kube_proxy_healthz_probe_reads_local_endpoints(probed: ProbedUpstream) -> None:
    spec = ProbeSpec(ProbeKind.KUBE_PROXY, "127.0.0.1", probed.port, path="/kube")
    assert (await run_probe(spec, 1.0))[0]
    probed.local_endpoints = 0
    passed, detail = await run_probe(spec, 1.0)
    assert not passed and "503" in detail
    tcp = ProbeSpec(ProbeKind.TCP, "127.0.0.1", probed.port)
    assert (await run_probe(tcp, 1.0))[0]


@pytest.mark.parametrize("enabled", [True, False])
async def test_outlier_detection_ejects_a_node_answering_502_unless_disabled(
    make_gateway: GatewayFactory, upstream: Upstream, probed: ProbedUpstream, enabled: bool
) -> None:
    probed.status = 502
    cfg = simple_config([probed.port, upstream.port])
    cfg["backends"][0]["outlierDetection"] = {"enabled": enabled, "consecutiveGatewayErrors": 2}
    cfg["backends"][0]["loadBalancer"] = {"policy": "round_robin"}
    gw = await make_gateway(cfg)
    answers = await served_by(gw.url("/x"), 30)
    bad = [a for a in answers if a.startswith("502")]
    if enabled:
        assert len(bad) == 2 and all(a.startswith("200") for a in answers[4:])
        assert list(gw.ctx.state.ejected) == [f"c0/127.0.0.1:{probed.port}"]
    else:
        assert len(bad) == 15 and not gw.ctx.state.ejected


async def test_tcp_connect_failures_eject_a_dead_endpoint_for_l4_routes(
    make_gateway: GatewayFactory,
) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    live = server.sockets[0].getsockname()[1]
    dead = free_port()
    gw = await make_gateway(
        {
            "listeners": [{"name": "l4", "protocol": "TCP", "port": 1}],
            "routes": [
                {"name": "t", "listeners": ["l4"], "rules": [{"backendRefs": [{"name": "tcp"}]}]}
            ],
            "backends": [
                {
                    "name": "tcp",
                    "loadBalancer": {"policy": "round_robin"},
                    "endpoints": [
                        {"address": "127.0.0.1", "port": dead, "cluster": "down"},
                        {"address": "127.0.0.1", "port": live, "cluster": "up"},
                    ],
                }
            ],
        }
    )
    for _ in range(8):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.read(4), 3) == b"ping"
        writer.close()
    server.close()
    assert f"down/127.0.0.1:{dead}" in gw.ctx.state.ejected


async def test_an_ejected_node_is_readmitted_only_after_a_probe_passes(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    dead = free_port()
    cfg = simple_config([dead, upstream.port], rule={"retry": {"attempts": 2}})
    cfg["backends"][0]["outlierDetection"] = {"baseEjectionTime": "200ms"}
    gw = await make_gateway(cfg)
    driver = HealthDriver(gw.ctx, rng=Random(1))
    driver.start()
    key = f"c0/127.0.0.1:{dead}"
    try:
        await served_by(gw.url("/x"), 10)
        assert key in gw.ctx.state.ejected
        await asyncio.sleep(0.8)  # several ejections ran out: each probe was refused
        assert key in gw.ctx.state.ejected
        assert driver.stats.ejections[("app", "readmission_probe_failed")] >= 1

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            writer.close()

        revived = await asyncio.start_server(answer, "127.0.0.1", dead)
        for _ in range(100):
            if key not in gw.ctx.state.ejected:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.15)  # the next tick reports the return and starts the ramp
        assert key not in gw.ctx.state.ejected and key in gw.ctx.state.returning
        revived.close()
    finally:
        await driver.stop()


def test_new_endpoints_of_a_serving_backend_ramp_but_a_first_table_does_not() -> None:
    from pydantic import TypeAdapter

    from gateway.config.model import GatewayConfig
    from gateway.context import GatewayContext
    from gateway.routing.compiler import compile_table

    def compiled(ports: list[int]) -> Any:
        return compile_table(TypeAdapter(GatewayConfig).validate_python(simple_config(ports)), ())

    first = compiled([30001, 30002])
    ctx = GatewayContext(table=first, settings=first.gateway)
    driver = HealthDriver(ctx, rng=Random(1))
    driver.sync_table(0.0)
    assert ctx.state.returning == {}
    ctx.table = compiled([30001, 30002, 30003])
    driver.sync_table(1.0)
    assert list(ctx.state.returning) == ["c2/127.0.0.1:30003"]


def test_an_ejected_endpoint_published_ready_again_is_let_back_at_once() -> None:
    from gateway.context import GatewayContext
    from gateway.upstream.outlier import Outcome
    from tests.gateway.routing.routing_builders import WEB, record, table

    doc = {
        "listeners": [WEB],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "web"}]}]}],
        "backends": [
            {"name": "web", "service": {"namespace": "shop", "name": "web", "port": "http"}}
        ],
    }
    nodes = [("n1", "10.0.0.1", "a"), ("n2", "10.0.0.2", "a")]
    first = table(doc, [record("c1", "r1", nodes)])
    ctx = GatewayContext(table=first, settings=first.gateway)
    driver = HealthDriver(ctx, rng=Random(1))
    driver.sync_table(0.0)
    key = "c1/10.0.0.1:30080"
    for _ in range(3):
        ctx.outliers.failure(first.backends["web"], key, Outcome.GATEWAY_FAILURE, ctx.state, 0.0)
    assert key in ctx.state.ejected
    ctx.table = table(doc, [record("c1", "r1", nodes, not_ready=["n1"])])
    driver.sync_table(0.5)
    assert key in ctx.state.ejected  # NotReady: nothing to learn yet
    ctx.table = table(doc, [record("c1", "r1", nodes)])
    driver.sync_table(1.0)
    assert key not in ctx.state.ejected


async def test_local_policy_nodes_are_probed_at_their_health_check_node_port() -> None:
    """externalTrafficPolicy Local: kube-proxy's /healthz on healthCheckNodePort decides."""
    from gateway.context import GatewayContext
    from portway.model import TrafficPolicy
    from tests.gateway.routing.routing_builders import WEB, record, table

    local = {"n": 1}

    async def healthz(request: web.Request) -> web.Response:
        body = json.dumps(
            {"service": {"namespace": "shop", "name": "web"}, **{"localEndpoints": local["n"]}}
        )
        return web.Response(status=200 if local["n"] else 503, text=body)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    doc = {
        "listeners": [WEB],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "web"}]}]}],
        "backends": [
            {
                "name": "web",
                "service": {"namespace": "shop", "name": "web", "port": "http"},
                "healthCheck": {"interval": "100ms", "unhealthyThreshold": 1},
            }
        ],
    }
    rec = record(
        "c1",
        "r1",
        [("n1", "127.0.0.1", "a"), ("n2", "127.0.0.2", "a")],
        policy=TrafficPolicy.LOCAL,
        health_check_node_port=port,
        local={"n1": 1, "n2": 1},
    )
    t = table(doc, [rec])
    ctx = GatewayContext(table=t, settings=t.gateway)
    driver = HealthDriver(ctx, rng=Random(2))
    driver.start()
    key = "c1/127.0.0.1:30080"
    try:
        await asyncio.sleep(0.3)
        assert key not in ctx.state.unhealthy  # 200 with localEndpoints 1
        local["n"] = 0  # kube-proxy: no local endpoint on this node any more -> 503
        for _ in range(100):
            if key in ctx.state.unhealthy:
                break
            await asyncio.sleep(0.02)
        assert key in ctx.state.unhealthy
        assert "kube-proxy healthz 503" in driver.reasons[key]
    finally:
        await driver.stop()
        await runner.cleanup()


async def test_a_node_that_accepts_but_never_answers_is_not_readmitted_without_a_check(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """No healthCheck: the readmission GET of an HTTP backend needs an HTTP answer."""
    answering = asyncio.Event()

    async def dark(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await answering.wait()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndark")

    server = await asyncio.start_server(dark, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rule = {"retry": {"attempts": 2, "perTryTimeout": "100ms"}}
    cfg = simple_config([port, upstream.port], rule=rule)
    cfg["backends"][0]["outlierDetection"] = {"baseEjectionTime": "200ms"}
    gw = await make_gateway(cfg)
    driver = HealthDriver(gw.ctx, rng=Random(1), readmission_timeout_s=0.2)
    driver.start()
    key = f"c0/127.0.0.1:{port}"
    try:
        assert all(a.startswith("200") for a in await served_by(gw.url("/x"), 10))
        assert key in gw.ctx.state.ejected
        for _ in range(60):  # the first readmission GET times out
            if driver.stats.ejections[("app", "readmission_probe_failed")]:
                break
            await asyncio.sleep(0.05)
        assert driver.stats.ejections[("app", "readmission_probe_failed")] >= 1
        assert key in gw.ctx.state.ejected
        answering.set()
        for _ in range(80):
            if key not in gw.ctx.state.ejected:
                break
            await asyncio.sleep(0.05)
        assert key not in gw.ctx.state.ejected
    finally:
        await driver.stop()
        server.close()
