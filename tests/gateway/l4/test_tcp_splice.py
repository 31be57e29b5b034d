"""Zero-copy relaying (splice through pipes): bytes both ways, half-close, idle, abort."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys

import pytest

from gateway.l4 import tcp
from gateway.l4.splice import available
from tests.gateway.conftest import GatewayFactory

pytestmark = pytest.mark.skipif(not available(), reason="os.splice is Linux-only")


def config(port: int, **rule: object) -> dict[str, object]:
    return {
        "listeners": [{"name": "l4", "protocol": "TCP", "port": 1}],
        "routes": [
            {"name": "t", "listeners": ["l4"], "rules": [{"backendRefs": [{"name": "b"}], **rule}]}
        ],
        "backends": [{"name": "b", "endpoints": [{"address": "127.0.0.1", "port": port}]}],
    }


async def digest_server() -> tuple[asyncio.Server, int]:
    """Answers the SHA-256 of everything it read once the client half-closes, then 1 MB."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        digest = hashlib.sha256()
        while data := await reader.read(1 << 20):
            digest.update(data)
        writer.write(digest.hexdigest().encode() + b"\n" + b"z" * 1_000_000)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_spliced_pair_moves_bytes_both_ways_and_passes_the_half_close(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tcp, "SPLICE", True)
    server, port = await digest_server()
    gw = await make_gateway(config(port))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"hello")
    await writer.drain()
    for _ in range(100):
        if gw.ctx.tunnels and next(iter(gw.ctx.tunnels)).spliced is not None:
            break
        await asyncio.sleep(0.01)
    assert next(iter(gw.ctx.tunnels)).spliced is not None  # the zero-copy path is in use
    payload = os.urandom(8_000_000)
    writer.write(payload)
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer[:64].decode() == hashlib.sha256(b"hello" + payload).hexdigest()
    assert answer[65:] == b"z" * 1_000_000
    writer.close()
    for _ in range(100):
        if not gw.ctx.tunnels:
            break
        await asyncio.sleep(0.01)
    assert not gw.ctx.tunnels
    server.close()


async def test_spliced_pair_obeys_idle_timeout_and_abort(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tcp, "SPLICE", True)

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    gw = await make_gateway(config(server.sockets[0].getsockname()[1], timeouts={"idle": "200ms"}))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"x")
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()
    reader2, writer2 = await asyncio.open_connection("127.0.0.1", gw.port)
    writer2.write(b"y")
    await writer2.drain()
    await asyncio.sleep(0.05)
    for tunnel in list(gw.ctx.tunnels):
        tunnel.abort()
    with pytest.raises((ConnectionResetError, AssertionError)):
        assert await asyncio.wait_for(reader2.read(), 3) != b""
    writer2.close()
    server.close()


@pytest.mark.parametrize(("value", "spliced"), [(None, False), ("0", False), ("1", True)])
def test_portway_splice_turns_the_zero_copy_path_on(value: str | None, spliced: bool) -> None:
    """`PORTWAY_SPLICE=1` is the only switch to splice(2); unset or 0 keeps the copy path."""
    env = {k: v for k, v in os.environ.items() if k != "PORTWAY_SPLICE"}
    if value is not None:
        env["PORTWAY_SPLICE"] = value
    out = subprocess.run(
        [sys.executable, "-c", "from gateway.l4 import tcp; print(tcp.SPLICE)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == str(spliced)
