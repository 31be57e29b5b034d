"""Slow clients: a slow POST is cut with 408 and never blamed on the endpoint; slowloris
connections do not slow legitimate clients and are closed after `firstRequestTimeout`."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import pytest

from tests.gateway.conftest import GatewayFactory, Upstream, simple_config
from tests.gateway.runtime.test_server_e2e import Gateway, free_port


async def test_slow_post_gets_408_at_the_request_timeout_and_no_endpoint_is_blamed(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port], rule={"timeouts": {"request": "1s"}}))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
    started = time.monotonic()

    async def trickle() -> None:
        for _ in range(40):
            writer.write(b"x")
            await asyncio.sleep(0.1)

    dripping = asyncio.create_task(trickle())
    out = await asyncio.wait_for(reader.read(), 5)
    dripping.cancel()
    assert out.startswith(b"HTTP/1.1 408 "), out[:100]
    assert b"connection: close" in out.lower()
    assert 0.9 < time.monotonic() - started < 2.0
    assert not gw.ctx.state.ejected and not gw.ctx.state.unhealthy
    writer.close()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latencies(port: int, clients: int = 4, each: int = 100) -> list[float]:
    request = b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n"
    out: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(each):
            started = time.perf_counter()
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await asyncio.wait_for(reader.readexactly(length), 5)
            out.append(time.perf_counter() - started)
        writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return out


SLOWLORIS = """
import asyncio, sys, time
async def main(port, n):
    conns = []
    opened = []
    for _ in range(n):
        opened.append(time.monotonic())
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET / HTTP/1.1\\r\\nHost: a\\r\\nX-Slow: ")
        conns.append((r, w))
    closed = [0.0] * n
    started = time.monotonic()
    async def watch(i, r):
        try:
            await r.read()
        except ConnectionError:
            pass
        closed[i] = time.monotonic() - opened[i]
    watchers = [asyncio.create_task(watch(i, r)) for i, (r, _) in enumerate(conns)]
    print("ready", flush=True)
    deadline = started + float(sys.argv[3])
    while time.monotonic() < deadline:  # a byte every 2 s per connection, spread evenly
        for first in range(0, n, 10):
            for _, w in conns[first:first + 10]:
                if not w.is_closing():
                    w.write(b"a")
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    print(sum(1 for t in closed if t > 0), min((t for t in closed if t > 0), default=0), flush=True)
    for w in watchers:
        w.cancel()
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


@pytest.mark.e2e
async def test_slowloris_does_not_slow_legitimate_clients_and_is_closed_in_time(
    tmp_path: Path, upstream: Upstream
) -> None:
    """1,000 connections trickle a header a byte at a time from another process while a
    legitimate client measures its latency; the gateway, a real process, closes the slow
    ones once `firstRequestTimeout` (2 s) passes."""
    port, admin = free_port(), free_port()
    text = f"""\
version: 1
gateway: {{firstRequestTimeout: 2s}}
listeners:
  - {{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}
routes:
  - name: r
    rules:
      - backendRefs: [{{name: api}}]
backends:
  - name: api
    endpoints: [{{address: 127.0.0.1, port: {upstream.port}}}]
admin: {{address: 127.0.0.1, port: {admin}}}
"""
    gateway = Gateway(tmp_path, text).start(admin)
    attackers: list[asyncio.subprocess.Process] = []

    async def attack(seconds: float) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SLOWLORIS,
            str(port),
            "1000",
            str(seconds),
            stdout=asyncio.subprocess.PIPE,
        )
        attackers.append(proc)
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"ready\n"
        # connected is not accepted: wait until the gateway holds them all
        for _ in range(200):
            open_now = (await gateway.metrics()).get(("portway_active_connections", ()), 0)
            if open_now >= 1000:
                break
            await asyncio.sleep(0.05)
        return proc

    try:
        await gateway.wait_ready(port)
        await latencies(port, each=20)  # warm up
        baseline, attacked = [], []
        for _ in range(3):  # interleaved, so both see the same background load
            baseline.append(await latencies(port))
            proc = await attack(1.5)
            attacked.append(await latencies(port))
            proc.kill()
            await proc.wait()
            await asyncio.sleep(0.3)
        p99_base = statistics.median(percentile(r, 0.99) for r in baseline)
        p99_attack = statistics.median(percentile(r, 0.99) for r in attacked)
        print(
            f"slowloris: p99 {p99_base * 1e3:.2f} ms -> {p99_attack * 1e3:.2f} ms "
            f"(median {statistics.median(baseline[0]) * 1e3:.2f} -> "
            f"{statistics.median(attacked[0]) * 1e3:.2f} ms) with 1000 slow connections"
        )
        # 1 ms floor: loopback p99 below it is timer noise, not a slowdown
        assert p99_attack < 2 * max(p99_base, 0.001)
        proc = await attack(3.0)
        assert proc.stdout is not None
        closed, first_s = (await asyncio.wait_for(proc.stdout.readline(), 20)).split()
        assert int(closed) == 1000  # every slow head was closed ...
        assert float(first_s) >= 1.9  # ... and none before firstRequestTimeout
    finally:
        for proc in attackers:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        gateway.stop()
