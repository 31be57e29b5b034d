"""The HTTP proxy end to end on loopback: real gateway, real upstreams, real clients."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from tests.gateway.conftest import (
    GatewayFactory,
    RawUpstream,
    Upstream,
    free_port,
    raw_exchange,
    simple_config,
)


def header(info: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in info["headers"] if k.lower() == name.lower()]


async def test_get_is_forwarded_with_forwarding_headers_and_request_id(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    async with aiohttp.ClientSession() as s, s.get(gw.url("/a/b?x=1")) as r:
        assert r.status == 200
        info = await r.json()
        assert r.headers["Via"] == "1.1 portway"
    assert info["path"] == "/a/b?x=1"
    assert header(info, "x-forwarded-for") == ["127.0.0.1"]
    assert header(info, "x-forwarded-proto") == ["http"]
    assert header(info, "x-forwarded-host") == [f"127.0.0.1:{gw.port}"]
    assert header(info, "forwarded")[0].startswith("for=127.0.0.1;proto=http")
    assert header(info, "host") == [f"127.0.0.1:{gw.port}"]
    assert len(header(info, "x-request-id")) == 1
    assert header(info, "via") == ["1.1 portway"]


async def test_keep_alive_reuses_client_and_upstream_connections(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    conn = aiohttp.TCPConnector(limit=1)
    peer_ports = set()
    async with aiohttp.ClientSession(connector=conn) as s:
        for _ in range(5):
            async with s.get(gw.url("/k")) as r:
                peer_ports.add((await r.json())["peer_port"])
    assert len(peer_ports) == 1, "the upstream connection is pooled and reused"
    pool = next(iter(gw.ctx.pools.pools.values()))
    assert pool.total == 1 and gw.ctx.pools.idle_count(pool) == 1


async def test_pipelined_requests_are_answered_in_order(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    paths = ["/slow?s=0.2", "/one", "/slow?s=0.05", "/two"]
    data = b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths)
    data += b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = await raw_exchange(gw.port, data)
    assert out.count(b"HTTP/1.1 200 OK") == 5
    bodies = [part for part in out.split(b"HTTP/1.1 200 OK")[1:]]
    assert b"slow" in bodies[0] and b'"/one"' in bodies[1]
    assert b"slow" in bodies[2] and b'"/two"' in bodies[3] and b'"/last"' in bodies[4]


async def test_chunked_request_and_response_bodies_are_streamed(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))

    async def gen() -> Any:
        for _ in range(10):
            yield b"q" * 10000

    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url("/sink"), data=gen()) as r:
            assert r.status == 200
            assert (await r.json())["body_len"] == 100000
        async with s.get(gw.url("/stream?n=300000")) as r:
            assert r.headers["Transfer-Encoding"] == "chunked"
            assert len(await r.read()) == 300000


async def test_expect_100_continue_gets_interim_response_before_body(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
        b"Connection: close\r\n\r\n"
    )
    line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert line.startswith(b"HTTP/1.1 100 Continue")
    writer.write(b"hello")
    rest = await asyncio.wait_for(reader.read(-1), 3)
    writer.close()
    assert rest.startswith(b"HTTP/1.1 200 OK")
    assert b'"body_len": 5' in rest and b"expect" not in rest.lower().split(b"\r\n\r\n", 1)[1]


async def test_websocket_upgrade_is_tunnelled(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    async with aiohttp.ClientSession() as s, s.ws_connect(gw.url("/ws")) as ws:
        for i in range(3):
            await ws.send_str(f"hi{i}")
            assert (await ws.receive_str()) == f"echo:hi{i}"
        await ws.send_bytes(b"\x00" * 200000)
        assert len(await ws.receive_bytes()) == 200000


async def test_http_10_client_gets_close_delimited_body_and_no_keep_alive(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    out = await raw_exchange(gw.port, b"GET /stream?n=1000 HTTP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"chunked" not in head.lower() and b"connection: close" in head.lower()
    assert body == b"z" * 1000


async def test_http_10_keep_alive_when_asked(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert b"connection: keep-alive" in head.lower()
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    writer.write(b"GET /y HTTP/1.0\r\n\r\n")
    rest = await asyncio.wait_for(reader.read(-1), 3)
    writer.close()
    assert rest.startswith(b"HTTP/1.1 200") and b'"/y"' in rest


async def test_hop_by_hop_headers_are_stripped(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    req = (
        b"GET /h HTTP/1.1\r\nHost: x\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n"
        b"Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: basic x\r\n"
        b"Proxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n"
    )
    out = await raw_exchange(gw.port, req)
    body = out.split(b"\r\n\r\n", 1)[1].lower()
    for name in (b"x-secret", b"keep-alive", b'"te"', b"proxy-authorization", b"proxy-connection"):
        assert name not in body
    assert b"x-kept" in body


async def test_forwarding_headers_from_untrusted_clients_are_replaced(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    spoof = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "Forwarded": "for=6.6.6.6"}
    async with aiohttp.ClientSession() as s, s.get(gw.url("/"), headers=spoof) as r:
        info = await r.json()
    assert header(info, "x-forwarded-for") == ["127.0.0.1"]
    assert header(info, "x-forwarded-proto") == ["http"]
    assert "6.6.6.6" not in header(info, "forwarded")[0]


async def test_forwarding_headers_from_trusted_proxies_are_appended(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    cfg = simple_config([upstream.port], gateway={"trustedProxies": ["127.0.0.0/8"]})
    gw = await make_gateway(cfg)
    spoof = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "Forwarded": "for=6.6.6.6"}
    async with aiohttp.ClientSession() as s, s.get(gw.url("/"), headers=spoof) as r:
        info = await r.json()
    assert header(info, "x-forwarded-for") == ["6.6.6.6, 127.0.0.1"]
    assert header(info, "x-forwarded-proto") == ["https"]
    assert header(info, "forwarded")[0].startswith("for=6.6.6.6, for=127.0.0.1")


async def test_header_filters_host_and_path_rewrite(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    rule = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
        "filters": {
            "requestHeaders": {
                "set": [{"name": "X-Set", "value": "s"}],
                "add": [{"name": "X-Add", "value": "a"}],
                "remove": ["X-Drop"],
            },
            "responseHeaders": {"set": [{"name": "X-Resp", "value": "r"}], "remove": ["Server"]},
            "urlRewrite": {"hostname": "internal.example", "replacePrefixMatch": "/v2"},
        },
    }
    gw = await make_gateway(simple_config([upstream.port], rule=rule))
    headers = {"X-Set": "client", "X-Drop": "gone", "X-Add": "client"}
    async with aiohttp.ClientSession() as s, s.get(gw.url("/api/items?q=1"), headers=headers) as r:
        info = await r.json()
        assert r.headers["X-Resp"] == "r" and "Server" not in r.headers
    assert info["path"] == "/v2/items?q=1"
    assert header(info, "x-set") == ["s"]
    assert header(info, "x-add") == ["client", "a"]
    assert header(info, "x-drop") == []
    assert header(info, "host") == ["internal.example"]


async def test_no_route_is_404_with_portway_error(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    rule = {"matches": [{"path": {"type": "Exact", "value": "/only"}}]}
    gw = await make_gateway(simple_config([upstream.port], rule=rule))
    async with aiohttp.ClientSession() as s, s.get(gw.url("/other")) as r:
        assert r.status == 404
        assert r.headers["portway-error"] == "no_route"


async def test_redirect_rule_answers_without_upstream(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    rule = {"filters": {"redirect": {"scheme": "https", "statusCode": 301}}}
    gw = await make_gateway(simple_config([upstream.port], rule=rule))
    async with aiohttp.ClientSession() as s, s.get(gw.url("/r"), allow_redirects=False) as r:
        assert r.status == 301
        assert r.headers["Location"].startswith("https://")


async def test_unhealthy_backend_is_503_no_healthy_upstream(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    for key in list(gw.ctx.table.backends["app"].endpoints):
        gw.ctx.state.set_unhealthy(key.key, True)
    async with aiohttp.ClientSession() as s, s.get(gw.url("/")) as r:
        assert r.status == 503
        assert r.headers["portway-error"] == "no_healthy_upstream"


async def test_connect_failure_without_retry_is_503(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(simple_config([free_port()]))
    async with aiohttp.ClientSession() as s, s.get(gw.url("/")) as r:
        assert r.status == 503
        assert r.headers["portway-error"] == "upstream_connect_failure"


async def test_upstream_reset_is_502(make_gateway: GatewayFactory) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    gw = await make_gateway(simple_config([server.sockets[0].getsockname()[1]]))
    async with aiohttp.ClientSession() as s, s.get(gw.url("/")) as r:
        assert r.status == 502
        assert r.headers["portway-error"] == "upstream_reset"
    server.close()


async def test_request_timeout_is_504(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    gw = await make_gateway(simple_config([upstream.port], rule={"timeouts": {"request": "200ms"}}))
    async with aiohttp.ClientSession() as s, s.get(gw.url("/slow?s=2")) as r:
        assert r.status == 504
        assert r.headers["portway-error"] == "upstream_timeout"


async def test_retry_fails_over_when_one_endpoint_port_is_closed(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    rule = {"retry": {"attempts": 2, "backoffBase": "1ms", "backoffMax": "2ms"}}
    gw = await make_gateway(simple_config([free_port(), upstream.port], rule=rule))
    statuses = []
    async with aiohttp.ClientSession() as s:
        for _ in range(40):
            async with s.get(gw.url("/f")) as r:
                statuses.append(r.status)
                await r.read()
    assert statuses == [200] * 40


async def test_per_try_timeout_retries_on_another_endpoint(
    make_gateway: GatewayFactory, upstream: Upstream, raw_upstream: RawUpstream
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    rule = {
        "retry": {"attempts": 2, "perTryTimeout": "150ms", "backoffBase": "1ms", "on": ["reset"]},
        "timeouts": {"request": "3s"},
    }
    gw = await make_gateway(
        simple_config([server.sockets[0].getsockname()[1], upstream.port], rule=rule)
    )
    async with aiohttp.ClientSession() as s:
        for _ in range(4):
            async with s.get(gw.url("/t")) as r:
                assert r.status == 200
    server.close()


async def test_post_is_not_retried_by_default(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    rule = {"retry": {"attempts": 2, "backoffBase": "1ms"}}
    closed = free_port()
    gw = await make_gateway(simple_config([closed, upstream.port], rule=rule))
    seen = set()
    async with aiohttp.ClientSession() as s:
        for _ in range(4):
            async with s.post(gw.url("/p"), data=b"x") as r:
                seen.add(r.status)
    assert seen == {200, 503}


async def test_head_response_has_no_body_and_connection_is_reused(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    gw = await make_gateway(simple_config([upstream.port]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    out = await asyncio.wait_for(reader.read(-1), 3)
    writer.close()
    first, _, rest = out.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200") and b"content-length" in first.lower()
    assert rest.startswith(b"HTTP/1.1 200") and b'"/g"' in rest


async def exchange_with_raw_endpoint(
    make_gateway: GatewayFactory,
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    request: bytes = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
) -> bytes:
    """The client's raw answer to `request` through a gateway whose one endpoint is `handle`."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        gw = await make_gateway(simple_config([port]))
        return await raw_exchange(gw.port, request)
    finally:
        server.close()


async def test_response_hop_by_hop_and_connection_named_headers_are_not_forwarded(
    make_gateway: GatewayFactory,
) -> None:
    response = (
        b"HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\n"
        b"Keep-Alive: timeout=5\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()
        writer.close()

    out = await exchange_with_raw_endpoint(make_gateway, handle)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"ok"
    lower = head.lower()
    assert b"x-kept: yes" in lower and b"content-length: 2" in lower
    assert b"x-secret" not in lower and b"keep-alive" not in lower
    assert lower.count(b"connection:") == 1 and b"connection: close" in lower


async def test_a_response_head_split_over_reads_and_after_an_interim_100_is_relayed_whole(
    make_gateway: GatewayFactory,
) -> None:
    """The upstream side reads heads from the bytes received, across reads."""
    final = (
        b"HTTP/1.1 200 OK\r\nServer: raw\r\nX-Long-Header: " + b"v" * 300 + b"\r\n"
        b"Content-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            if b"/split" in head:
                for i in range(0, len(final), 7):  # 7-byte writes: the head spans many reads
                    writer.write(final[i : i + 7])
                    await writer.drain()
                    await asyncio.sleep(0.001)
            else:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + final)  # interim + final, one read
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        gw = await make_gateway(simple_config([port]))
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        answers = []
        for path in (b"/split", b"/interim"):
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            body = await asyncio.wait_for(reader.readexactly(5), 5)
            answers.append((head, body))
        writer.close()
    finally:
        server.close()
    for head, body in answers:
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b"hello"
        assert b"X-Long-Header: " + b"v" * 300 + b"\r\n" in head
        assert b"Server: raw\r\n" in head and b"100 Continue" not in head
        assert b"keep-alive" not in head.lower()


async def test_a_101_to_a_request_without_upgrade_is_502_and_never_a_tunnel(
    make_gateway: GatewayFactory,
) -> None:
    """An endpoint answering a plain GET with 101 has broken HTTP: the client gets a
    502 and none of the bytes the endpoint sent after its 101."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\nSECRET-TUNNEL-BYTES"
        )
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    out = await exchange_with_raw_endpoint(make_gateway, handle)
    assert out.startswith(b"HTTP/1.1 502 ")
    assert b"portway-error: upstream_protocol_error" in out.lower()
    assert b"SECRET-TUNNEL-BYTES" not in out and b"101" not in out.partition(b"\r\n")[0]
