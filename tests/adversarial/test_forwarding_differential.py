"""Differential test: what the gateway forwards, parsed by h11, means what the client sent.

Generated requests (methods, percent-encoded paths and queries, header names
and values with inner spaces and obs-text, bodies with Content-Length or
chunked in uneven chunks) travel on one keep-alive client connection through
a real gateway to an upstream that parses with h11, an independent HTTP/1.1
implementation. For every request the upstream must see the same method,
target, end-to-end header fields (names case-insensitively, values as sent,
in order) and body bytes; only the proxy's own fields may be added (Via,
X-Request-Id, X-Forwarded-*, Forwarded) and hop-by-hop ones removed.
"""

from __future__ import annotations

import asyncio
import random
import string
from dataclasses import dataclass, field

import h11

from tests.gateway.conftest import GatewayFactory, simple_config

PROXY_ADDED = {b"via", b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto"}
PROXY_ADDED |= {b"x-forwarded-host", b"forwarded"}
FRAMING = {b"content-length", b"transfer-encoding", b"connection", b"host"}
TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
VCHAR = "".join(chr(c) for c in range(0x21, 0x7F))


@dataclass
class Sent:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunks: list[bytes] | None
    wire: bytes = b""


@dataclass
class Seen:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    chunked: bool = False


@dataclass
class H11Upstream:
    seen: list[Seen] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        current: Seen | None = None
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.Request):
                    headers = [(n.lower(), v) for n, v in event.headers.raw_items()]
                    chunked = any(n == b"transfer-encoding" for n, _ in headers)
                    current = Seen(event.method, event.target, headers, chunked=chunked)
                elif isinstance(event, h11.Data) and current is not None:
                    current.body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage) and current is not None:
                    self.seen.append(current)
                    current = None
                    body = b"ok"
                    writer.write(
                        conn.send(h11.Response(status_code=200, headers=[("content-length", "2")]))
                        or b""
                    )
                    writer.write(conn.send(h11.Data(data=body)) or b"")
                    writer.write(conn.send(h11.EndOfMessage()) or b"")
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except h11.ProtocolError as exc:
            self.errors.append(repr(exc))
        finally:
            writer.close()


def generate(rng: random.Random) -> Sent:
    method = rng.choice([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"])
    segments = []
    for _ in range(rng.randint(1, 4)):
        seg = "".join(rng.choice(string.ascii_letters + "-._~%20:@!$&'()*+,;=") for _ in range(5))
        segments.append(seg.replace("%", "%25").replace("%2520", "%20"))
    target = ("/" + "/".join(segments)).encode()
    if rng.random() < 0.6:
        target += b"?" + "&".join(f"k{i}=v%2F{rng.randint(0, 999)}" for i in range(3)).encode()
    headers: list[tuple[bytes, bytes]] = []
    for _ in range(rng.randint(0, 8)):
        name = "X-" + "".join(rng.choice(TOKEN) for _ in range(rng.randint(1, 12)))
        words = ["".join(rng.choice(VCHAR) for _ in range(rng.randint(1, 8))) for _ in range(3)]
        value = " ".join(words).encode()
        if rng.random() < 0.2:
            value += b" caf\xe9"  # obs-text
        headers.append((name.encode(), value))
    if rng.random() < 0.3:
        headers.append((b"Cookie", b"a=1; b=2"))
    body = b""
    chunks: list[bytes] | None = None
    if method in (b"POST", b"PUT", b"PATCH"):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3000)))
        if rng.random() < 0.5:
            cuts = sorted(rng.sample(range(1, max(2, len(body))), k=min(3, max(0, len(body) - 1))))
            chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
            chunks = [c for c in chunks if c]
    sent = Sent(method, target, headers, body, chunks)
    wire = method + b" " + target + b" HTTP/1.1\r\nHost: diff.test\r\n"
    wire += b"".join(n + b": " + v + b"\r\n" for n, v in headers)
    if chunks is not None:
        wire += b"Transfer-Encoding: chunked\r\n\r\n"
        wire += b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    elif body or method in (b"POST", b"PUT", b"PATCH"):
        wire += b"Content-Length: %d\r\n\r\n" % len(body) + body
    else:
        wire += b"\r\n"
    sent.wire = wire
    return sent


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await asyncio.wait_for(reader.readexactly(length), 5)


async def test_forwarded_requests_mean_what_the_client_sent(make_gateway: GatewayFactory) -> None:
    h11_upstream = H11Upstream()
    server = await asyncio.start_server(h11_upstream.handle, "127.0.0.1", 0)
    gw = await make_gateway(simple_config([server.sockets[0].getsockname()[1]]))
    rng = random.Random(9112)
    sent = [generate(rng) for _ in range(60)]
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    for request in sent:
        writer.write(request.wire)
        response = await read_response(reader)
        assert response.startswith(b"HTTP/1.1 200 "), (request.wire[:200], response[:200])
    writer.close()
    server.close()
    assert h11_upstream.errors == []
    assert len(h11_upstream.seen) == len(sent)
    for request, seen in zip(sent, h11_upstream.seen, strict=True):
        assert seen.method == request.method
        assert seen.target == request.target
        assert (b"host", b"diff.test") in seen.headers
        end_to_end = [(n, v) for n, v in seen.headers if n not in PROXY_ADDED and n not in FRAMING]
        assert end_to_end == [(n.lower(), v.strip()) for n, v in request.headers]
        assert seen.body == request.body
        assert seen.chunked == (request.chunks is not None)
