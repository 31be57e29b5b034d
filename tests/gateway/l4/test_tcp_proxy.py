"""TCP and TLS passthrough listeners, HTTPS termination by SNI certificate, ClientHello parsing."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from gateway.l4.client_hello import ClientHelloError, parse_sni
from gateway.runtime.tls import certificate_for
from tests.gateway.conftest import GatewayFactory, Upstream, free_port


def client_hello(server_name: str | None) -> bytes:
    """A real ClientHello from the ssl module, taken off a memory BIO."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_sni_is_read_from_a_real_client_hello() -> None:
    assert parse_sni(client_hello("API.Example.com")) == "api.example.com"


def test_client_hello_without_sni_gives_empty_name() -> None:
    assert parse_sni(client_hello(None)) == ""


def test_partial_client_hello_needs_more_bytes() -> None:
    hello = client_hello("a.example")
    for cut in (1, 5, 20, len(hello) - 1):
        assert parse_sni(hello[:cut]) is None


def test_client_hello_split_over_two_records_is_reassembled() -> None:
    hello = client_hello("split.example")
    body = hello[5:]
    first, second = body[:40], body[40:]
    records = b"".join(
        b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part for part in (first, second)
    )
    assert parse_sni(records) == "split.example"


@pytest.mark.parametrize(
    "junk", [b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\x00", b"\x16\x02\x00"]
)
def test_non_tls_bytes_are_refused(junk: bytes) -> None:
    with pytest.raises(ClientHelloError):
        parse_sni(junk + b"\x00" * 10)


def test_truncated_extensions_are_refused() -> None:
    body = client_hello("t.example")[5:-10]  # handshake cut inside its extensions
    body = body[:1] + (len(body) - 4).to_bytes(3, "big") + body[4:]
    record = b"\x16\x03\x01" + len(body).to_bytes(2, "big") + body
    with pytest.raises(ClientHelloError):
        parse_sni(record)


def test_certificate_choice_prefers_exact_then_one_label_wildcard() -> None:
    exact = {"a.example.com": 1}
    wildcard = {"example.com": 2}
    assert certificate_for("a.example.com", exact, wildcard) == 1
    assert certificate_for("b.example.com", exact, wildcard) == 2
    assert certificate_for("x.b.example.com", exact, wildcard) is None
    assert certificate_for("example.com", exact, wildcard) is None


async def _echo_server(tag: bytes, ssl_ctx: ssl.SSLContext | None = None) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(tag + data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_ctx)


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def l4_config(
    protocol: str, routes: list[dict[str, Any]], backends: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "listeners": [{"name": "l4", "protocol": protocol, "port": 1}],
        "routes": routes,
        "backends": backends,
    }


async def test_tcp_listener_moves_bytes_both_ways_and_fails_over_on_connect_failure(
    make_gateway: GatewayFactory,
) -> None:
    server = await _echo_server(b"A:")
    backends = [
        {
            "name": "tcp",
            "endpoints": [
                {"address": "127.0.0.1", "port": free_port(), "cluster": "down"},
                {"address": "127.0.0.1", "port": _port(server), "cluster": "up"},
            ],
        }
    ]
    routes = [{"name": "t", "listeners": ["l4"], "rules": [{"backendRefs": [{"name": "tcp"}]}]}]
    gw = await make_gateway(l4_config("TCP", routes, backends))
    for _ in range(4):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(6), 3) == b"A:ping"
        big = b"x" * 3_000_000
        writer.write(big)
        got = 0
        while got < len(big):
            got += len(await asyncio.wait_for(reader.read(1 << 20), 3)) - 0
        writer.close()
    server.close()


async def test_open_tcp_connections_are_tracked_for_drain_and_abort_cuts_both_sides(
    make_gateway: GatewayFactory,
) -> None:
    server = await _echo_server(b"B:")
    backends = [{"name": "tcp", "endpoints": [{"address": "127.0.0.1", "port": _port(server)}]}]
    routes = [{"name": "t", "listeners": ["l4"], "rules": [{"backendRefs": [{"name": "tcp"}]}]}]
    gw = await make_gateway(l4_config("TCP", routes, backends))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"hi")
    assert await asyncio.wait_for(reader.readexactly(4), 3) == b"B:hi"
    (tunnel,) = gw.ctx.tunnels
    tunnel.abort()
    try:
        rest = await asyncio.wait_for(reader.read(), 3)
    except ConnectionResetError:
        rest = b""
    assert rest == b""  # cut: EOF or reset, nothing more
    for _ in range(100):
        if not gw.ctx.tunnels:
            break
        await asyncio.sleep(0.01)
    assert not gw.ctx.tunnels
    writer.close()
    server.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_passthrough_routes_on_sni_without_terminating(
    make_gateway: GatewayFactory, ca: trustme.CA
) -> None:
    servers = {}
    for name, tag in (("a.example.test", b"A:"), ("b.example.test", b"B:")):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(name).configure_cert(ctx)
        servers[name] = await _echo_server(tag, ctx)
    backends = [
        {"name": f"be-{n[0]}", "endpoints": [{"address": "127.0.0.1", "port": _port(s)}]}
        for n, s in servers.items()
    ]
    routes = [
        {
            "name": f"r-{n[0]}",
            "listeners": ["l4"],
            "hostnames": [n],
            "rules": [{"backendRefs": [{"name": f"be-{n[0]}"}]}],
        }
        for n in servers
    ]
    gw = await make_gateway(l4_config("TLS", routes, backends))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    for name, tag in (("a.example.test", b"A:"), ("b.example.test", b"B:")):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", gw.port, ssl=client, server_hostname=name
        )
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(7), 3) == tag + b"hello"
        writer.close()
    for server in servers.values():
        server.close()


@pytest.fixture
def cert_files(tmp_path: Path, ca: trustme.CA) -> dict[str, tuple[str, str]]:
    out = {}
    for label, names in (("exact", ["api.example.test"]), ("wild", ["*.example.test"])):
        cert = ca.issue_cert(*names)
        cert_path, key_path = tmp_path / f"{label}.pem", tmp_path / f"{label}.key"
        cert.private_key_pem.write_to_path(str(key_path))
        cert.cert_chain_pems[0].write_to_path(str(cert_path))
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(str(cert_path), append=True)
        out[label] = (str(cert_path), str(key_path))
    return out


async def test_https_listener_terminates_tls_with_the_certificate_for_the_sni_name(
    make_gateway: GatewayFactory,
    upstream: Upstream,
    ca: trustme.CA,
    cert_files: dict[str, tuple[str, str]],
) -> None:
    certs = [
        {
            "certFile": cert_files["wild"][0],
            "keyFile": cert_files["wild"][1],
            "hostnames": ["*.example.test"],
        },
        {
            "certFile": cert_files["exact"][0],
            "keyFile": cert_files["exact"][1],
            "hostnames": ["api.example.test"],
        },
    ]
    cfg = {
        "listeners": [
            {"name": "tls", "protocol": "HTTPS", "port": 1, "tls": {"certificates": certs}}
        ],
        "backends": [
            {"name": "app", "endpoints": [{"address": "127.0.0.1", "port": upstream.port}]}
        ],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "app"}]}]}],
    }
    gw = await make_gateway(cfg)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    for name in ("api.example.test", "www.example.test"):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", gw.port, ssl=client, server_hostname=name
        )
        peer = writer.get_extra_info("peercert")
        writer.write(f"GET /tls HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        out = await asyncio.wait_for(reader.read(-1), 3)
        writer.close()
        sans = [v for _, v in peer["subjectAltName"]]
        assert sans == (["api.example.test"] if name.startswith("api") else ["*.example.test"])
        assert out.startswith(b"HTTP/1.1 200 OK")
        assert b'["X-Forwarded-Proto", "https"]' in out
