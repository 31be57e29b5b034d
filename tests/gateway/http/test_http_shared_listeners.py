"""Several listeners on one address:port, told apart by hostname (Gateway API), over real
sockets: the most specific listener hostname takes a request, only the routes attached to
that listener (by name, as `sectionName`) are tried, 404 for a host no listener takes;
over HTTPS the SNI picks the certificate among all the listeners'."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from pydantic import TypeAdapter

from gateway.config.model import GatewayConfig
from gateway.config.ports import socket_groups
from gateway.context import GatewayContext, RequestLog
from gateway.http.plan import compile_http_table
from gateway.runtime.listener import start_listener
from gateway.runtime.tls import ServerTls
from tests.gateway.conftest import Upstream


class SharedGateway:
    """Listeners of one config started the way the worker starts them: a socket per
    `socket_groups` entry, every listener in the config on one placeholder port."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.ctx: GatewayContext | None = None
        self.port = 0
        self.certificates: dict[str, ServerTls] = {}

    async def start(self, raw: dict[str, Any], ctx_hook: Any = None) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        for lst in raw["listeners"]:
            lst["port"] = self.port
        config = TypeAdapter(GatewayConfig).validate_python(json.loads(json.dumps(raw)))
        ctx = GatewayContext(table=compile_http_table(config, [], seed=3), settings=config.gateway)
        if ctx_hook is not None:
            ctx_hook(ctx)
        self.ctx = ctx
        ((key, group),) = socket_groups(config.listeners).items()
        assert key == f"127.0.0.1:{self.port}" and len(group) == len(raw["listeners"])
        first, *sharing = group
        self.servers.append(
            await start_listener(
                ctx,
                first,
                reuse_port=False,
                sock=sock,
                certificates=self.certificates,
                sharing=tuple(sharing),
            )
        )

    def close(self) -> None:
        for server in self.servers:
            server.close()
        if self.ctx is not None and self.ctx.pools is not None:
            self.ctx.pools.close()


@pytest.fixture
async def shared() -> AsyncIterator[SharedGateway]:
    gw = SharedGateway()
    yield gw
    gw.close()


def tagged(name: str, **rule: Any) -> dict[str, Any]:
    """A rule to backend `app` whose requests say which route sent them (X-Route)."""
    return {
        "backendRefs": [{"name": "app"}],
        "filters": {"requestHeaders": {"set": [{"name": "X-Route", "value": name}]}},
        **rule,
    }


def config(upstream: Upstream, listeners: list[dict[str, Any]], routes: list[Any]) -> Any:
    return {
        "listeners": listeners,
        "backends": [
            {"name": "app", "endpoints": [{"address": "127.0.0.1", "port": upstream.port}]}
        ],
        "routes": routes,
    }


async def ask(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str = "/echo"
) -> tuple[int, str]:
    """One keep-alive GET; (status, the X-Route the upstream saw or "")."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await asyncio.wait_for(reader.readexactly(length), 3)
    if status != 200:
        return status, ""
    headers = {k.lower(): v for k, v in json.loads(body)["headers"]}
    return status, headers.get("x-route", "")


async def test_the_most_specific_listener_hostname_takes_each_request_on_one_connection(
    shared: SharedGateway, upstream: Upstream
) -> None:
    await shared.start(
        config(
            upstream,
            [
                {"name": "api", "protocol": "HTTP", "port": 1, "hostnames": ["api.example.test"]},
                {"name": "wild", "protocol": "HTTP", "port": 1, "hostnames": ["*.example.test"]},
                {"name": "deep", "protocol": "HTTP", "port": 1, "hostnames": ["*.eu.example.test"]},
                {"name": "other", "protocol": "HTTP", "port": 1, "hostnames": ["other.test"]},
            ],
            [
                {
                    "name": "api",
                    "listeners": ["api"],
                    "rules": [
                        tagged("api", matches=[{"path": {"type": "PathPrefix", "value": "/echo"}}])
                    ],
                },
                {"name": "wild", "listeners": ["wild"], "rules": [tagged("wild")]},
                {"name": "deep", "listeners": ["deep"], "rules": [tagged("deep")]},
                {"name": "other", "listeners": ["other"], "rules": [tagged("other")]},
            ],
        )
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", shared.port)
    try:
        assert await ask(reader, writer, "api.example.test") == (200, "api")
        # the exact listener takes api.example.test: its routes only, no fall-through to *.
        assert await ask(reader, writer, "api.example.test", "/elsewhere") == (404, "")
        assert await ask(reader, writer, "WWW.Example.Test:8080") == (200, "wild")
        assert await ask(reader, writer, "a.b.example.test") == (200, "wild")
        assert await ask(reader, writer, "fr.eu.example.test") == (200, "deep")  # longer suffix
        assert await ask(reader, writer, "other.test") == (200, "other")
        assert await ask(reader, writer, "example.test") == (404, "")  # * needs a label
        assert await ask(reader, writer, "nobody.test") == (404, "")
        assert await ask(reader, writer, "api.example.test") == (200, "api")
    finally:
        writer.close()


class ListenerRecorder:
    """An observer keeping the listener each finished request's log names."""

    def __init__(self) -> None:
        self.listeners: list[str] = []

    def begin(self, log: RequestLog, headers: dict[str, str]) -> Any:
        return None

    def upstream_headers(self, token: Any) -> list[tuple[bytes, bytes]]:
        return []

    def end(self, token: Any, log: RequestLog) -> None:
        self.listeners.append(log.listener)

    def upstream_connect_failed(self, cluster: str, endpoint: str) -> None:
        return None


async def test_a_listener_without_hostnames_takes_what_the_others_do_not(
    shared: SharedGateway, upstream: Upstream
) -> None:
    recorder = ListenerRecorder()

    def observe(ctx: GatewayContext) -> None:
        ctx.observer = recorder

    await shared.start(
        config(
            upstream,
            [
                {"name": "named", "protocol": "HTTP", "port": 1, "hostnames": ["a.test"]},
                {"name": "rest", "protocol": "HTTP", "port": 1},
            ],
            [
                {"name": "named", "listeners": ["named"], "rules": [tagged("named")]},
                {"name": "rest", "listeners": ["rest"], "rules": [tagged("rest")]},
                {
                    "name": "both",
                    "rules": [
                        tagged("both", matches=[{"path": {"type": "Exact", "value": "/both"}}])
                    ],
                },
            ],
        ),
        observe,
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", shared.port)
    try:
        assert await ask(reader, writer, "a.test") == (200, "named")
        assert await ask(reader, writer, "b.test") == (200, "rest")
        assert await ask(reader, writer, "b.test", "/both") == (200, "both")  # no listeners named
        assert await ask(reader, writer, "a.test", "/both") == (200, "both")
    finally:
        writer.close()
    assert recorder.listeners == ["named", "rest", "rest", "named"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def write_cert(tmp: Path, stem: str, cert: trustme.LeafCert) -> tuple[str, str]:
    cert_file, key_file = tmp / f"{stem}.crt", tmp / f"{stem}.key"
    cert.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return str(cert_file), str(key_file)


async def test_https_listeners_share_a_port_the_sni_picking_each_one_s_certificate(
    shared: SharedGateway, upstream: Upstream, ca: trustme.CA, tmp_path: Path
) -> None:
    a_cert, a_key = write_cert(tmp_path, "a", ca.issue_cert("a.example.test"))
    b_cert, b_key = write_cert(tmp_path, "b", ca.issue_cert("*.b.example.test"))
    listeners = [
        {
            "name": "a",
            "protocol": "HTTPS",
            "port": 1,
            "hostnames": ["a.example.test"],
            "tls": {
                "certificates": [
                    {"certFile": a_cert, "keyFile": a_key, "hostnames": ["a.example.test"]}
                ]
            },
        },
        {
            "name": "b",
            "protocol": "HTTPS",
            "port": 1,
            "hostnames": ["*.b.example.test"],
            "tls": {
                "certificates": [
                    {"certFile": b_cert, "keyFile": b_key, "hostnames": ["*.b.example.test"]}
                ]
            },
        },
    ]
    routes = [
        {"name": "a", "listeners": ["a"], "rules": [tagged("a")]},
        {"name": "b", "listeners": ["b"], "rules": [tagged("b")]},
    ]
    await shared.start(config(upstream, listeners, routes))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    seen = {}
    for sni, host, expected in (
        ("a.example.test", "a.example.test", (200, "a")),
        ("x.b.example.test", "x.b.example.test", (200, "b")),
        ("a.example.test", "x.b.example.test", (421, "")),  # another certificate's name
    ):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", shared.port, ssl=client, server_hostname=sni
        )
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            seen[sni] = x509.load_der_x509_certificate(der).subject.rfc4514_string()
            assert await ask(reader, writer, host) == expected
        finally:
            writer.close()
    assert seen["a.example.test"] != seen["x.b.example.test"]
    assert list(shared.certificates) == [f"127.0.0.1:{shared.port}"]
    (tls,) = shared.certificates.values()
    assert [status.cert_file for status in tls.status] == [a_cert, b_cert]
