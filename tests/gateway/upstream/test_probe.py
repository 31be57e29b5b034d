"""The network probe reads exactly the answer its framing says, within its timeout (loopback)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.upstream.health import ProbeKind, ProbeSpec
from gateway.upstream.probe import run_probe

Answering = Callable[[bytes], Awaitable[int]]


@pytest.fixture
async def answering() -> AsyncIterator[Answering]:
    """Start a loopback server writing `answer` to each client and keeping the connection
    open (as a server ignoring `Connection: close` does); yields its port."""
    servers: list[asyncio.Server] = []
    held: list[asyncio.StreamWriter] = []

    async def start(answer: bytes) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            held.append(writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for writer in held:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


def http(port: int, kind: ProbeKind = ProbeKind.HTTP) -> ProbeSpec:
    return ProbeSpec(kind, "127.0.0.1", port, path="/healthz")


async def test_a_content_length_answer_passes_although_the_server_keeps_the_connection(
    answering: Answering,
) -> None:
    port = await answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert await asyncio.wait_for(run_probe(http(port), 1.0), 0.5) == (True, "status 200")


async def test_a_chunked_kube_proxy_answer_is_dechunked_before_it_is_judged(
    answering: Answering,
) -> None:
    body = b'{"localEndpoints": 2}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    port = await answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    passed, detail = await asyncio.wait_for(run_probe(http(port, ProbeKind.KUBE_PROXY), 1.0), 0.5)
    assert passed and "2 local endpoints" in detail


async def test_an_unexpected_status_and_a_non_http_answer_fail_with_their_reason(
    answering: Answering,
) -> None:
    port = await answering(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
    assert await run_probe(http(port), 1.0) == (False, "status 503 not in [200]")
    port = await answering(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert await run_probe(http(port), 1.0) == (False, "not an HTTP answer")


async def test_a_server_that_never_answers_fails_by_the_timeout(
    answering: Answering,
) -> None:
    port = await answering(b"")
    passed, detail = await asyncio.wait_for(run_probe(http(port), 0.1), 1.0)
    assert not passed and detail == "timeout after 0.1s"


async def test_a_refused_connect_fails_and_a_listening_port_passes_a_tcp_probe() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert await run_probe(ProbeSpec(ProbeKind.TCP, "127.0.0.1", port), 1.0) == (
            True,
            "connected",
        )
    passed, _ = await run_probe(ProbeSpec(ProbeKind.TCP, "127.0.0.1", port), 1.0)
    assert not passed
