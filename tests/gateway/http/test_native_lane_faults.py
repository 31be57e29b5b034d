"""The native socket lane's faults found by review (mended in 1c84fb3), one test each.

Each test fails on the lane as it was before that commit: objects left behind by
closed connections, a rule dropping the framing Content-Length, a reset idle
socket answered only by the request timeout, native idle sockets holding the
slot a body request needs, a `Close` header kept on the fast path, interim heads
relayed without the rule's removals, and a listener spinning at the fd limit.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from gateway.http.lane_proxy import LaneProxy
from tests.gateway.conftest import GatewayFactory, Upstream, raw_exchange, simple_config
from tests.gateway.http import test_native_lane
from tests.gateway.http.test_native_lane import (
    Handler,
    blank,
    canned,
    echo_of,
    head_fields,
    header,
    pool_of,
    split_response,
    stats,
)

scripted = test_native_lane.scripted
"""The raw endpoint fixture, shared with the lane's main tests."""

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def read_framed(reader: asyncio.StreamReader, timeout: float = 3.0) -> tuple[bytes, bytes]:
    """One response that must carry a Content-Length: its head and its body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lengths = head_fields(head[:-4]).get(b"content-length")
    assert lengths is not None, head
    return head, await asyncio.wait_for(reader.readexactly(int(lengths[0])), timeout)


def lane_proxies() -> list[object]:
    """The LaneProxy objects alive after a collection (other tests' leftovers, say)."""
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, LaneProxy)]


def lane_proxies_besides(kept: list[object]) -> int:
    """How many LaneProxy objects outlive a collection, besides `kept` (a count: a
    list of them would keep them alive through the next collection)."""
    gc.collect()
    return sum(
        1 for o in gc.get_objects() if isinstance(o, LaneProxy) and not any(o is k for k in kept)
    )


async def test_closed_connections_leave_no_lane_proxy_behind(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]]
) -> None:
    """The transport drops its protocol after connection_lost: the two made a cycle the
    collector could not see (the C transport is not tracked), so every closed
    connection's proxy stayed."""
    gw = await make_gateway(simple_config([await scripted(canned(OK))]))
    before = lane_proxies()
    for _ in range(50):
        out = await raw_exchange(
            gw.port, b"GET /l HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        assert out.startswith(b"HTTP/1.1 200 OK"), out[:200]
    assert stats(gw)["accepted"] == 50
    for _ in range(50):  # the lane runs connection_lost once the loop gets to it
        left = lane_proxies_besides(before)
        if not left:
            break
        await asyncio.sleep(0.02)
    assert left == 0
    assert not gw.ctx.connections


@pytest.mark.parametrize("native", [True, False], ids=["lane", "no-lane"])
async def test_a_rule_removing_content_length_keeps_keep_alive_responses_framed(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]], native: bool
) -> None:
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Secret: s\r\n\r\nok"
    rule = {"filters": {"responseHeaders": {"remove": ["Content-Length", "X-Secret"]}}}
    config = simple_config(
        [await scripted(canned(resp))], rule=rule, gateway={"nativeSockets": native}
    )
    gw = await make_gateway(config)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        for path in (b"/a", b"/b"):
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n")
            head, body = await read_framed(reader)
            assert head.startswith(b"HTTP/1.1 200 OK"), head
            fields = head_fields(head[:-4])
            assert fields[b"content-length"] == [b"2"] and b"x-secret" not in fields
            assert b"transfer-encoding" not in fields
            assert body == b"ok"
    finally:
        writer.close()
    assert (gw.ctx.pools.lane is not None) == native


class ResettingUpstream:
    """Blocking sockets in a thread: the first connection answers one request, then,
    when told, resets (SO_LINGER 0) while the gateway holds it idle; later
    connections answer every request. A thread, so the reset can land while the
    test holds the event loop still."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        self.reset_now = threading.Event()
        self.reset_done = threading.Event()
        self.stop = threading.Event()
        self.connections = 0
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn, self.connections == 1))
            t.daemon = True
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, first: bool) -> None:
        conn.settimeout(5)
        buf = b""
        try:
            while not self.stop.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf.partition(b"\r\n\r\n")[2]
                conn.sendall(OK)
                if first:
                    self.reset_now.wait(5)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    conn.close()
                    self.reset_done.set()
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.reset_now.set()
        self.listener.close()
        for t in self.threads:
            t.join(2)


@pytest.fixture
def resetting() -> Iterator[ResettingUpstream]:
    up = ResettingUpstream()
    yield up
    up.close()


async def test_an_idle_socket_reset_as_it_is_reused_is_retried_at_once(
    make_gateway: GatewayFactory, resetting: ResettingUpstream
) -> None:
    """The reset is found inside forward() (the send fails) before the try is bound:
    it was dropped and the request waited for its timeout (504); now the stale-socket
    retry answers on a fresh connection at once, as on the event loop's path."""
    gw = await make_gateway(simple_config([resetting.port], rule={"timeouts": {"request": "2s"}}))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        head, _ = await read_framed(reader)
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        await asyncio.sleep(0.1)
        assert gw.ctx.pools.idle_count(pool_of(gw)) == 1
        writer.write(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")  # written at once
        # the loop (and the lane in it) stays still: the request reaches the gateway's
        # socket, then the upstream's reset reaches the idle one; the lane sees both in
        # one batch, the request first, and forwards it on the reset socket
        time.sleep(0.05)
        resetting.reset_now.set()
        assert resetting.reset_done.wait(5)
        time.sleep(0.05)
        start = time.monotonic()
        head, body = await read_framed(reader, timeout=5)
        elapsed = time.monotonic() - start
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"ok", head
    assert elapsed < 1.0
    assert resetting.connections == 2
    s = stats(gw)
    assert s["upstream_connects"] == 2 and s["upstream_reused"] == 1


async def test_a_body_request_at_the_connection_cap_takes_a_native_idle_sockets_slot(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """A try the lane cannot carry (a body) needs an event loop connection; at
    circuitBreaker.maxConnections the native idle socket held the only slot and woke
    no waiter (503 overflow after the connect timeout): now it is closed for it."""
    config = simple_config([upstream.port], rule={"timeouts": {"connect": "1s", "request": "3s"}})
    config["backends"][0]["circuitBreaker"] = {"maxConnections": 1}
    gw = await make_gateway(config)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        head, _ = await read_framed(reader)
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        pool = pool_of(gw)
        assert pool.total == 1 and gw.ctx.pools.lane.idle(pool.lane_id) == 1
        start = time.monotonic()
        writer.write(b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
        head, body = await read_framed(reader)
        elapsed = time.monotonic() - start
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 OK"), head + body
    info = echo_of(head + body)
    assert info["path"] == "/b" and info["body_len"] == 2
    assert elapsed < 0.5
    assert pool.total == 1


async def test_a_header_named_close_is_not_forwarded_when_connection_names_it(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """`Connection: close` names the `Close` field hop-by-hop: the event loop's path drops
    it; the fast path forwarded it (it read `close` only as the keep-alive verdict)."""
    data = b"GET /c HTTP/1.1\r\nHost: a\r\nClose: secret\r\nConnection: close\r\n\r\n"
    lane_gw = await make_gateway(simple_config([upstream.port]))
    plain_gw = await make_gateway(simple_config([upstream.port], gateway={"nativeSockets": False}))
    plain_out = await raw_exchange(plain_gw.port, data)
    lane_out = await raw_exchange(lane_gw.port, data)
    assert header(echo_of(plain_out), "close") == []
    assert header(echo_of(lane_out), "close") == []
    assert blank(lane_out, lane_gw.port) == blank(plain_out, plain_gw.port)


@pytest.mark.parametrize("native", [True, False], ids=["lane", "no-lane"])
async def test_early_hints_get_the_rules_response_header_removals(
    make_gateway: GatewayFactory, scripted: Callable[[Handler], Awaitable[int]], native: bool
) -> None:
    resp = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nX-Hint: 1\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nLink: </b.css>\r\nContent-Length: 2\r\n\r\nok"
    )
    rule = {"filters": {"responseHeaders": {"remove": ["Link"]}}}
    config = simple_config(
        [await scripted(canned(resp))], rule=rule, gateway={"nativeSockets": native}
    )
    gw = await make_gateway(config)
    out = await raw_exchange(gw.port, b"GET /h HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    interim, rest = split_response(out)
    assert interim.startswith(b"HTTP/1.1 103 "), out
    assert head_fields(interim) == {b"x-hint": [b"1"]}
    final, body = split_response(rest)
    assert final.startswith(b"HTTP/1.1 200 OK") and body == b"ok"
    assert b"link" not in head_fields(final)
    assert (gw.ctx.pools.lane is not None) == native


AT_THE_FD_LIMIT = textwrap.dedent(
    """
    import asyncio, json, os, resource, socket, time
    from pydantic import TypeAdapter
    from gateway.config.model import GatewayConfig
    from gateway.context import GatewayContext
    from gateway.http.plan import compile_http_table
    from gateway.runtime.listener import start_listener
    from tests.gateway.conftest import simple_config

    OK = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok"

    async def handle(reader, writer):
        try:
            while True:
                await reader.readuntil(b"\\r\\n\\r\\n")
                writer.write(OK)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        up = await asyncio.start_server(handle, "127.0.0.1", 0)
        raw = simple_config([up.sockets[0].getsockname()[1]])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        raw["listeners"][0]["port"] = port = sock.getsockname()[1]
        config = TypeAdapter(GatewayConfig).validate_python(raw)
        table = compile_http_table(config, [], version="test", seed=7)
        ctx = GatewayContext(table=table, settings=config.gateway)
        await start_listener(
            ctx, config.listeners[0], reuse_port=False, sock=sock, certificates={}
        )
        lane = ctx.pools.lane
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (top + 1, hard))
        fill = []
        try:
            while True:
                fill.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        await asyncio.sleep(0.05)
        start = time.process_time()
        await asyncio.sleep(0.5)
        cpu = time.process_time() - start
        accepted_at_limit = lane.stats()["accepted"]
        for fd in fill:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        start = time.monotonic()
        answers = []
        for c in clients:
            reader, writer = await asyncio.open_connection(sock=c)
            writer.write(b"GET /e HTTP/1.1\\r\\nHost: a\\r\\nConnection: close\\r\\n\\r\\n")
            answers.append((await asyncio.wait_for(reader.read(-1), 5)).decode())
            writer.close()
        print(json.dumps({
            "cpu": cpu,
            "filled": len(fill),
            "accepted_at_limit": accepted_at_limit,
            "accepted": lane.stats()["accepted"],
            "answers": answers,
            "served_after": time.monotonic() - start,
        }))

    asyncio.run(main())
    """
)


def test_a_listener_at_the_fd_limit_waits_instead_of_spinning_and_accepts_again() -> None:
    """accept4 failing with EMFILE left the listener ready in the lane's epoll: the
    loop spun on it (a core's worth of CPU) for as long as the fds stayed used. Run in
    a child process, whose fd limit this test lowers to what it already uses."""
    root = Path(__file__).resolve().parents[3]
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    child = subprocess.run(
        [sys.executable, "-c", AT_THE_FD_LIMIT],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["filled"] > 0
    assert result["accepted_at_limit"] == 0
    assert result["cpu"] < 0.2, result
    assert result["accepted"] == 3
    assert all(a.startswith("HTTP/1.1 200 OK") and a.endswith("ok") for a in result["answers"])
    assert result["served_after"] < 3.0, result
