"""TCP listeners at the edge: access rules, PROXY protocol, half-close, idle and connect timeouts.

Real sockets on loopback: a gateway TCP listener in front of small asyncio servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet

from gateway.l4.proxy_protocol import V2_SIGNATURE
from tests.gateway.conftest import GatewayFactory, RawUpstream, raw_exchange, simple_config


async def server_recording(reply_after_eof: bytes = b"") -> tuple[asyncio.Server, list[bytes]]:
    """Reads until the client's EOF, then answers `reply_after_eof` and closes."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        seen.append(data)
        writer.write(reply_after_eof)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


def tcp_config(port: int, **listener: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"backendRefs": [{"name": "tcp"}]}
    if "timeouts" in listener:
        rule["timeouts"] = listener.pop("timeouts")
    route: dict[str, Any] = {"name": "t", "listeners": ["l4"], "rules": [rule]}
    if "route_access" in listener:
        route["access"] = listener.pop("route_access")
    return {
        "listeners": [{"name": "l4", "protocol": "TCP", "port": 1, **listener}],
        "routes": [route],
        "backends": [{"name": "tcp", "endpoints": [{"address": "127.0.0.1", "port": port}]}],
    }


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def test_half_close_lets_the_upstream_answer_after_the_client_finished_sending(
    make_gateway: GatewayFactory,
) -> None:
    server, seen = await server_recording(b"thanks")
    gw = await make_gateway(tcp_config(port_of(server)))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"all my data")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 3) == b"thanks"
    assert seen == [b"all my data"]
    writer.close()
    server.close()


async def test_refused_by_listener_or_route_access_is_closed_and_nothing_is_connected(
    make_gateway: GatewayFactory,
) -> None:
    for where in ("listener", "route"):
        server, seen = await server_recording()
        deny = {"default": "deny", "rules": [{"action": "allow", "cidrs": ["10.0.0.0/8"]}]}
        extra = {"access": deny} if where == "listener" else {"route_access": deny}
        gw = await make_gateway(tcp_config(port_of(server), **extra))
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"hello")
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()
        await asyncio.sleep(0.05)
        assert seen == [], where
        server.close()


async def test_idle_tcp_connection_is_closed_after_the_rule_idle_timeout(
    make_gateway: GatewayFactory,
) -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    gw = await make_gateway(tcp_config(port_of(server), timeouts={"idle": "200ms"}))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"x")
    started = time.monotonic()
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), 3) == b""
    assert 0.15 < time.monotonic() - started < 1.0
    writer.close()
    server.close()


async def test_connect_timeout_bounds_a_black_holed_endpoint(
    make_gateway: GatewayFactory,
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: the backlog fills, SYNs go unanswered
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(listener.getsockname())
        fillers.append(s)
    raw = tcp_config(listener.getsockname()[1], timeouts={"connect": "200ms"})
    gw = await make_gateway(raw)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    started = time.monotonic()
    with contextlib.suppress(ConnectionResetError):
        await asyncio.wait_for(reader.read(), 5)
    assert time.monotonic() - started < 2.5  # 3 tries x 200 ms, not the kernel's minutes
    writer.close()
    for s in fillers:
        s.close()
    listener.close()


def proxy_v2(source: str, port: int) -> bytes:
    body = socket.inet_aton(source) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", port, 80)
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


async def test_proxy_protocol_address_is_the_client_for_access_and_forwarding(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    raw = simple_config([raw_upstream.port])
    raw["listeners"][0]["proxyProtocol"] = True
    raw["listeners"][0]["access"] = {
        "default": "deny",
        "rules": [{"action": "allow", "cidrs": ["198.51.100.0/24"]}],
    }
    gw = await make_gateway(raw)
    request = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    out = await raw_exchange(gw.port, b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 80\r\n" + request)
    assert out.startswith(b"HTTP/1.1 200 ")
    assert b"X-Forwarded-For: 198.51.100.9\r\n" in raw_upstream.received
    out = await raw_exchange(gw.port, proxy_v2("203.0.113.5", 4444) + request)
    assert out.startswith(b"HTTP/1.1 403 ") and b"portway-error: access" in out
    before = bytes(raw_upstream.received)
    out = await raw_exchange(gw.port, request)  # no PROXY header: closed, nothing forwarded
    assert out == b""
    assert raw_upstream.received == before


async def test_proxy_protocol_on_a_tcp_listener(make_gateway: GatewayFactory) -> None:
    server, seen = await server_recording(b"ok")
    gw = await make_gateway(
        tcp_config(
            port_of(server),
            proxyProtocol=True,
            access={"default": "deny", "rules": [{"action": "allow", "cidrs": ["192.0.2.0/24"]}]},
        )
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(proxy_v2("192.0.2.1", 1000) + b"payload")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 3) == b"ok"
    assert seen == [b"payload"]  # the header is consumed, never forwarded
    writer.close()
    server.close()


async def test_listener_country_rules_use_the_maxmind_database(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream, tmp_path: Path
) -> None:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    writer.insert_network(IPSet(["127.0.0.0/8"]), {"country": {"iso_code": "ZZ"}})
    writer.to_db_file(str(tmp_path / "loopback.mmdb"))
    raw = simple_config([raw_upstream.port])
    raw["listeners"][0]["access"] = {
        "geoipDatabase": str(tmp_path / "loopback.mmdb"),
        "rules": [{"action": "deny", "countries": ["ZZ"]}],
    }
    gw = await make_gateway(raw)
    out = await raw_exchange(gw.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 403 ") and b"portway-error: access" in out
    assert raw_upstream.received == b""
