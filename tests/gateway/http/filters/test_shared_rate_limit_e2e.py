"""Rate limits across the workers of a real two-worker gateway: `scope: shared` holds the
limit for the gateway, `scope: worker` gives each worker its own, and a worker the
supervisor restarts finds the shared buckets as they were."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from tests.gateway.conftest import RawUpstream
from tests.gateway.runtime.test_server_e2e import Gateway, free_port

pytestmark = pytest.mark.e2e

RATE = 100  # requests a second, and the bucket's depth (burst 0)
HAMMER_S = 2.0
CONNECTIONS = 16  # SO_REUSEPORT spreads them: all on one worker has odds 2^-15
TOLERANCE = 0.05


async def hammer(port: int, seconds: float) -> tuple[dict[str, dict[int, int]], float]:
    """Keep-alive clients alternating /shared and /worker as fast as answers come back;
    the statuses per path, and the seconds from the first request sent to the last answer."""
    counts: dict[str, dict[int, int]] = {"/shared": {}, "/worker": {}}
    started = time.monotonic()
    deadline = started + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        paths = ("/shared", "/worker")
        sent = 0
        while time.monotonic() < deadline:
            path = paths[sent % 2]
            sent += 1
            writer.write(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await asyncio.wait_for(reader.readexactly(length), 5)
            status = int(head.split(b" ", 2)[1])
            counts[path][status] = counts[path].get(status, 0) + 1
        writer.close()

    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    return counts, time.monotonic() - started


async def fresh_connections(port: int, path: str) -> list[int]:
    """Statuses of one request on each of `CONNECTIONS` new connections (both workers)."""
    out = []
    for _ in range(CONNECTIONS):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        out.append(int((await asyncio.wait_for(reader.read(), 5)).split(b" ", 2)[1]))
        writer.close()
    return out


def workers_of(supervisor: int) -> list[int]:
    """The supervisor's child processes (its workers), from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == supervisor:
                children.append(int(entry.name))
    return sorted(children)


async def test_shared_scope_holds_the_limit_across_two_workers_and_worker_scope_does_not(
    tmp_path: Path, raw_upstream: RawUpstream
) -> None:
    port, admin = free_port(), free_port()
    limit = f"requests: {RATE}, per: 1s"
    text = f"""\
version: 1
listeners:
  - {{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}
routes:
  - name: shared
    rules:
      - matches: [{{path: {{type: PathPrefix, value: /shared}}}}]
        backendRefs: [{{name: app}}]
        rateLimit: {{{limit}, scope: shared}}
  - name: worker
    rules:
      - matches: [{{path: {{type: PathPrefix, value: /worker}}}}]
        backendRefs: [{{name: app}}]
        rateLimit: {{{limit}, scope: worker}}
  - name: slow
    rules:
      - matches: [{{path: {{type: PathPrefix, value: /slow}}}}]
        backendRefs: [{{name: app}}]
        rateLimit: {{requests: 2, per: 60s, key: route}}
backends:
  - name: app
    endpoints: [{{address: 127.0.0.1, port: {raw_upstream.port}}}]
admin: {{address: 127.0.0.1, port: {admin}}}
"""
    gateway = Gateway(tmp_path, text, workers=2).start(admin)
    try:
        await gateway.wait_ready(port)
        counts, elapsed_s = await hammer(port, HAMMER_S)
        before = await fresh_connections(port, "/slow")
        assert gateway.proc is not None
        killed = workers_of(gateway.proc.pid)
        os.kill(killed[0], signal.SIGKILL)  # the supervisor starts another one
        while True:
            await asyncio.sleep(0.1)
            alive = workers_of(gateway.proc.pid)
            if len(alive) == 2 and killed[0] not in alive:
                break
        await gateway.wait_ready(port)
        after = await fresh_connections(port, "/slow")
    finally:
        gateway.stop()
    assert sorted(before) == [200, 200] + [429] * (CONNECTIONS - 2)
    assert after == [429] * CONNECTIONS  # the new worker found the buckets in place
    # GCRA from a full bucket: RATE at once, then RATE a second for the elapsed time
    one_bucket = RATE + RATE * elapsed_s
    shared, worker = counts["/shared"], counts["/worker"]
    print(
        f"2 workers, {RATE}/s for {elapsed_s:.2f} s (one bucket: {one_bucket:.0f}): "
        f"shared {shared}, {shared.get(200, 0) / one_bucket - 1:+.1%}; "
        f"worker {worker}, {worker.get(200, 0) / one_bucket:.2f} buckets"
    )
    assert set(shared) | set(worker) == {200, 429}
    assert shared[429] > 5 * shared[200]  # hammered well past the limit
    assert abs(shared[200] - one_bucket) <= TOLERANCE * one_bucket
    assert abs(worker[200] - 2 * one_bucket) <= TOLERANCE * 2 * one_bucket
    assert raw_upstream.received.count(b"GET /shared ") == shared[200]
    assert raw_upstream.received.count(b"GET /worker ") == worker[200]
