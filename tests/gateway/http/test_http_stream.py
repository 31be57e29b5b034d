"""Large bodies stream through the proxy with bounded memory, both directions.

The proxy runs in its own process (benchmarks/gateway_launcher.py) so its RSS
is measured alone; the upstream and the client run in the test process. The
bound asserted (48 MiB of growth) is far below the body sizes: a proxy that
buffered would grow by the body size.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.gateway.conftest import Upstream

ROOT = Path(__file__).resolve().parents[3]
MIB = 1 << 20
GROWTH_LIMIT = 48 * MIB


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
async def proxy_process(tmp_path: Path, upstream: Upstream) -> AsyncIterator[tuple[int, int]]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "gw.yaml"
    config.write_text(
        f"""
listeners:
  - {{name: web, protocol: HTTP, port: {port}}}
backends:
  - name: app
    endpoints: [{{address: 127.0.0.1, port: {upstream.port}}}]
routes:
  - name: r
    rules:
      - backendRefs: [{{name: app}}]
        timeouts: {{request: 120s}}
"""
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "benchmarks" / "gateway_launcher.py"),
        str(config),
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.startswith(b"ready"), line
    yield proc.pid, port
    proc.terminate()
    await proc.wait()


class PeakRss:
    """Samples a process's RSS every 20 ms while a transfer runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss(self.pid))
            await asyncio.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()


async def download(port: int, size: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /stream?n={size} HTTP/1.0\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    got = 0
    while data := await reader.read(1 << 20):
        got += len(data)
    writer.close()
    return got


async def upload(port: int, size: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /sink HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Content-Length: {size}\r\n\r\n".encode()
    )
    piece = b"u" * MIB
    for _ in range(size // MIB):
        writer.write(piece)
        await writer.drain()
    out = await reader.read(-1)
    writer.close()
    return out


async def _check_streaming(pid: int, port: int, size: int) -> None:
    await download(port, MIB)  # warm up: imports, first pooled connection
    base = rss(pid)
    with PeakRss(pid) as down:
        assert await download(port, size) == size
    with PeakRss(pid) as up:
        out = await upload(port, size)
    digest = hashlib.sha256(b"u" * size).hexdigest() if size <= 256 * MIB else None
    assert b'"body_len": %d' % size in out
    if digest:
        assert digest.encode() in out
    print(
        f"rss base {base / MIB:.1f} MiB, growth down {(down.peak - base) / MIB:.1f} MiB,"
        f" up {(up.peak - base) / MIB:.1f} MiB"
    )
    assert down.peak - base < GROWTH_LIMIT, (
        f"download grew RSS by {(down.peak - base) / MIB:.1f} MiB"
    )
    assert up.peak - base < GROWTH_LIMIT, f"upload grew RSS by {(up.peak - base) / MIB:.1f} MiB"


@pytest.mark.timeout(120)
async def test_256_mib_download_and_upload_stream_with_bounded_memory(
    proxy_process: tuple[int, int],
) -> None:
    await _check_streaming(*proxy_process, 256 * MIB)


@pytest.mark.e2e
@pytest.mark.timeout(300)
async def test_1_gib_download_and_upload_stream_with_bounded_memory(
    proxy_process: tuple[int, int],
) -> None:
    await _check_streaming(*proxy_process, 1024 * MIB)
