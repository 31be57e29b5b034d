"""Shared fixtures for gateway tests: real upstream servers and a real gateway on loopback.

Additive: other test modules may add fixtures here. Everything binds
127.0.0.1 with kernel-chosen ports and is closed by the fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from pydantic import TypeAdapter

from gateway.config.model import GatewayConfig
from gateway.context import GatewayContext
from gateway.http.plan import compile_http_table
from gateway.runtime.listener import start_listener
from gateway.runtime.tls import ServerTls


def free_port(address: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for 'endpoint is down' cases)."""
    return free_ports(1, address)[0]


def free_ports(n: int, address: str = "127.0.0.1") -> list[int]:
    """`n` different ports nothing listens on (bound together: two lone picks can be the
    same port, as a gateway's listener and admin once were: "address already in use")."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind((address, 0))
        return [int(s.getsockname()[1]) for s in socks]


async def _echo(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    info = {
        "method": request.method,
        "path": request.path_qs,
        "version": f"{request.version.major}.{request.version.minor}",
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
        "body_len": len(body),
        "body_sha": hashlib.sha256(body).hexdigest(),
        "peer_port": request.transport.get_extra_info("peername")[1] if request.transport else 0,
    }
    return web.json_response(info)


async def _stream(request: web.Request) -> web.StreamResponse:
    """GET /stream?n=BYTES: a chunked body of n bytes written in 64 KiB pieces."""
    total = int(request.query.get("n", "0"))
    resp = web.StreamResponse()
    await resp.prepare(request)
    piece = b"z" * 65536
    sent = 0
    while sent < total:
        n = min(len(piece), total - sent)
        await resp.write(piece[:n])
        sent += n
    await resp.write_eof()
    return resp


async def _status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="from upstream")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "1")))
    return web.Response(text="slow")


async def _ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str("echo:" + msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def _sink(request: web.Request) -> web.Response:
    """POST /sink: count and hash a body without holding it."""
    digest = hashlib.sha256()
    total = 0
    async for data in request.content.iter_any():
        digest.update(data)
        total += len(data)
    return web.json_response({"body_len": total, "body_sha": digest.hexdigest()})


async def serve_app(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve app on 127.0.0.1 at a kernel-chosen port; the caller cleans up the runner."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]


class ProbedUpstream:
    """An upstream answering `text` on every path, counting the probes of its /healthz.

    Each answer can be switched while it runs: /healthz answers the status in
    `health` (`probes` counts them, `probe_hosts` keeps the Host headers they
    sent); /kube answers as kube-proxy's healthz does, `{"localEndpoints": n}`
    with 503 when `local_endpoints` is 0; every other path answers `status`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.health = 200
        self.status = 200
        self.local_endpoints = 1
        self.probes = 0
        self.probe_hosts: set[str] = set()
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def start(self) -> ProbedUpstream:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/kube", self._kube)
        app.router.add_route("*", "/{tail:.*}", self._any)
        self.runner, self.port = await serve_app(app)
        return self

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        self.probes += 1
        self.probe_hosts.add(request.headers.get("Host", ""))
        return web.Response(status=self.health)

    async def _kube(self, request: web.Request) -> web.Response:
        body = json.dumps({"localEndpoints": self.local_endpoints})
        return web.Response(status=200 if self.local_endpoints else 503, text=body)

    async def _any(self, request: web.Request) -> web.Response:
        return web.Response(status=self.status, text=self.text)


@pytest.fixture
async def probed() -> AsyncIterator[ProbedUpstream]:
    """A started `ProbedUpstream` answering "probed"."""
    p = await ProbedUpstream("probed").start()
    yield p
    await p.stop()


@dataclass
class Upstream:
    port: int
    name: str
    runner: web.AppRunner


async def start_upstream(name: str = "up") -> Upstream:
    """An aiohttp server with /echo, /stream, /status/{code}, /slow, /ws, /sink."""
    app = web.Application(client_max_size=1 << 40)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/ws", _ws)
    app.router.add_route("*", "/status/{code}", _status)
    app.router.add_get("/slow", _slow)
    app.router.add_post("/sink", _sink)
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner, port = await serve_app(app)
    return Upstream(port, name, runner)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = await start_upstream()
    yield up
    await up.runner.cleanup()


@pytest.fixture
async def upstream2() -> AsyncIterator[Upstream]:
    up = await start_upstream("up2")
    yield up
    await up.runner.cleanup()


@dataclass
class RawUpstream:
    """A TCP server that records every byte it receives and answers a canned response."""

    port: int
    server: asyncio.Server
    received: bytearray = field(default_factory=bytearray)
    connections: int = 0


@pytest.fixture
async def raw_upstream() -> AsyncIterator[RawUpstream]:
    holder: list[RawUpstream] = []
    response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        holder[0].connections += 1
        try:
            while data := await reader.read(65536):
                holder[0].received += data
                if b"\r\n\r\n" in data:
                    writer.write(response)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    raw = RawUpstream(server.sockets[0].getsockname()[1], server)
    holder.append(raw)
    yield raw
    server.close()


@dataclass
class Gateway:
    ctx: GatewayContext
    ports: dict[str, int]
    servers: list[asyncio.Server]
    server_tls: dict[str, ServerTls] = field(default_factory=dict)
    """HTTPS listeners' TLS by listener name (what a worker reloads)."""

    @property
    def port(self) -> int:
        return next(iter(self.ports.values()))

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def simple_config(
    ports: list[int], *, rule: dict[str, Any] | None = None, gateway: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One HTTP listener, one route, one static backend with the given endpoint ports."""
    return {
        "gateway": gateway or {},
        "listeners": [{"name": "web", "protocol": "HTTP", "port": 1}],
        "backends": [
            {
                "name": "app",
                "endpoints": [
                    {"address": "127.0.0.1", "port": p, "cluster": f"c{i}"}
                    for i, p in enumerate(ports)
                ],
            }
        ],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "app"}], **(rule or {})}]}],
    }


GatewayFactory = Callable[[dict[str, Any]], Awaitable[Gateway]]


@pytest.fixture
async def make_gateway() -> AsyncIterator[GatewayFactory]:
    """Compile a camelCase config dict with the real compiler and start its listeners.

    Listener ports in the dict are placeholders: each listener gets a free port
    (the bound socket is handed to `start_listener`).
    """
    started: list[Gateway] = []

    async def make(raw: dict[str, Any]) -> Gateway:
        socks: dict[str, socket.socket] = {}
        for lst in raw.get("listeners", []):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            lst["port"] = sock.getsockname()[1]
            socks[lst["name"]] = sock
        config = TypeAdapter(GatewayConfig).validate_python(json.loads(json.dumps(raw)))
        table = compile_http_table(config, [], version="test", seed=7)
        ctx = GatewayContext(table=table, settings=config.gateway)
        servers = []
        certificates: dict[str, ServerTls] = {}
        for lst in config.listeners:
            sock = socks[lst.name]
            servers.append(
                await start_listener(
                    ctx, lst, reuse_port=False, sock=sock, certificates=certificates
                )
            )
        ports = {name: s.getsockname()[1] for name, s in socks.items()}
        gw = Gateway(ctx, ports, servers, certificates)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        for server in gw.servers:
            server.close()
        if gw.ctx.pools is not None:
            gw.ctx.pools.close()


async def raw_exchange(port: int, data: bytes, *, timeout: float = 3.0) -> bytes:
    """Send raw bytes, half-close, and read everything until the gateway closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = b""
    try:
        out = await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()
    return out
