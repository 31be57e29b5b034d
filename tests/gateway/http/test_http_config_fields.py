"""Config fields of limits, retries, timeouts, host and TLS change what the gateway does.

Each test is the config coverage entry of its field: it fails when the running
gateway ignores the field (tests/gateway/config/test_config_coverage.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import trustme

from tests.gateway.conftest import (
    GatewayFactory,
    RawUpstream,
    Upstream,
    free_port,
    raw_exchange,
    simple_config,
)

pytestmark = pytest.mark.timeout(30)
HOST = "a.example.test"


async def test_max_request_line_bytes_answers_414(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    line = b"GET /" + b"a" * 400 + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    roomy = await make_gateway(simple_config([raw_upstream.port]))
    assert (await raw_exchange(roomy.port, line)).startswith(b"HTTP/1.1 200 ")
    tight = await make_gateway(
        simple_config([raw_upstream.port], gateway={"maxRequestLineBytes": 256})
    )
    assert (await raw_exchange(tight.port, line)).startswith(b"HTTP/1.1 414 ")


async def test_max_header_bytes_answers_431(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 1500 + b"\r\nConnection: close\r\n\r\n"
    roomy = await make_gateway(simple_config([raw_upstream.port]))
    assert (await raw_exchange(roomy.port, head)).startswith(b"HTTP/1.1 200 ")
    tight = await make_gateway(simple_config([raw_upstream.port], gateway={"maxHeaderBytes": 1024}))
    assert (await raw_exchange(tight.port, head)).startswith(b"HTTP/1.1 431 ")


async def test_idempotent_only_off_retries_a_post_on_another_endpoint(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    rule = {"retry": {"attempts": 2, "backoffBase": "1ms", "idempotentOnly": False}}
    gw = await make_gateway(simple_config([free_port(), upstream.port], rule=rule))
    async with aiohttp.ClientSession() as session:
        for _ in range(6):
            async with session.post(gw.url("/p"), data=b"x") as resp:
                assert resp.status == 200


async def test_preserve_host_off_sends_the_endpoint_s_address_as_host(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    async def host_seen(preserve: bool) -> str:
        rule = {"filters": {"preserveHost": preserve}}
        gw = await make_gateway(simple_config([upstream.port], rule=rule))
        async with (
            aiohttp.ClientSession() as session,
            session.get(gw.url("/echo"), headers={"Host": "shop.example"}) as resp,
        ):
            body = json.loads(await resp.text())
        return dict((k.lower(), v) for k, v in body["headers"])["host"]

    assert await host_seen(True) == "shop.example"
    assert await host_seen(False) == f"127.0.0.1:{upstream.port}"


async def test_backend_request_timeout_bounds_one_try(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    rule = {"timeouts": {"request": "10s", "backendRequest": "200ms"}}
    gw = await make_gateway(simple_config([upstream.port], rule=rule))
    started = time.monotonic()
    async with aiohttp.ClientSession() as session, session.get(gw.url("/slow?s=3")) as resp:
        assert resp.status == 504
    assert time.monotonic() - started < 2.0


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port whose accept queue is full: further SYNs are dropped, connects hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


async def test_connect_timeout_gives_up_on_a_black_holed_endpoint(
    make_gateway: GatewayFactory, black_hole: int
) -> None:
    rule = {"timeouts": {"request": "10s", "connect": "300ms"}}
    gw = await make_gateway(simple_config([black_hole], rule=rule))
    started = time.monotonic()
    async with aiohttp.ClientSession() as session, session.get(gw.url("/")) as resp:
        assert resp.status in (502, 503, 504)
    assert time.monotonic() - started < 2.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _https(tmp_path: Path, ca: trustme.CA, port: int, **tls: object) -> dict[str, object]:
    leaf = ca.issue_cert(HOST)
    cert_file, key_file = tmp_path / "a.crt", tmp_path / "a.key"
    leaf.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    certificates = [{"certFile": str(cert_file), "keyFile": str(key_file)}]
    return {
        "listeners": [
            {
                "name": "web",
                "protocol": "HTTPS",
                "port": 1,
                "tls": {"certificates": certificates, **tls},
            }
        ],
        "backends": [{"name": "app", "endpoints": [{"address": "127.0.0.1", "port": port}]}],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "app"}]}]}],
    }


def _client(ca: trustme.CA, *, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if max_version is not None:
        ctx.maximum_version = max_version
    ctx.set_alpn_protocols(["h2", "http/1.1", "x-portway-test"])
    return ctx


async def test_min_version_tls13_refuses_a_tls12_client(
    make_gateway: GatewayFactory, upstream: Upstream, ca: trustme.CA, tmp_path: Path
) -> None:
    default = await make_gateway(_https(tmp_path, ca, upstream.port))
    tls12 = _client(ca, max_version=ssl.TLSVersion.TLSv1_2)
    _, writer = await asyncio.open_connection(
        "127.0.0.1", default.port, ssl=tls12, server_hostname=HOST
    )
    writer.close()
    strict = await make_gateway(_https(tmp_path, ca, upstream.port, minVersion="TLSv1.3"))
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.open_connection("127.0.0.1", strict.port, ssl=tls12, server_hostname=HOST)


async def test_alpn_offers_the_configured_protocols(
    make_gateway: GatewayFactory, upstream: Upstream, ca: trustme.CA, tmp_path: Path
) -> None:
    async def negotiated(alpn: list[str]) -> str | None:
        gw = await make_gateway(_https(tmp_path, ca, upstream.port, alpn=alpn))
        _, writer = await asyncio.open_connection(
            "127.0.0.1", gw.port, ssl=_client(ca), server_hostname=HOST
        )
        chosen = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        writer.close()
        return chosen

    assert await negotiated(["http/1.1"]) == "http/1.1"
    assert await negotiated(["x-portway-test"]) == "x-portway-test"


async def test_url_rewrite_replace_full_path_sends_the_whole_new_path(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    rule = {"filters": {"urlRewrite": {"replaceFullPath": "/echo/fixed"}}}
    gw = await make_gateway(simple_config([upstream.port], rule=rule))
    async with aiohttp.ClientSession() as session, session.get(gw.url("/any/thing?q=1")) as resp:
        body = json.loads(await resp.text())
    assert body["path"] == "/echo/fixed?q=1"


async def test_response_headers_add_appends_to_the_upstream_s_answer(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    rule = {"filters": {"responseHeaders": {"add": [{"name": "X-Served-By", "value": "edge"}]}}}
    gw = await make_gateway(simple_config([upstream.port], rule=rule))
    async with aiohttp.ClientSession() as session, session.get(gw.url("/echo")) as resp:
        assert resp.headers.getall("X-Served-By") == ["edge"]


async def test_via_names_the_gateway_in_the_via_header(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port], gateway={"via": "edge-fra"}))
    async with aiohttp.ClientSession() as session, session.get(gw.url("/echo")) as resp:
        body = json.loads(await resp.text())
        assert resp.headers["Via"] == "1.1 edge-fra"
    assert [v for k, v in body["headers"] if k.lower() == "via"] == ["1.1 edge-fra"]
