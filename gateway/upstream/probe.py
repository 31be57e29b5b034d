"""One active health probe over the network: a TCP connect, or an HTTP/1.1 GET read to its end.

The verdict on an answer is the health state machine's (`health.judge_http`);
this module only opens the connection, writes the request and reads exactly
the answer its framing says (Content-Length, chunked, or up to the close), at
most `MAX_PROBE_BODY` bytes, all within the probe's timeout. A timeout, a refused
or reset connection and an answer cut short are failed probes with their
reason, not exceptions.
"""

from __future__ import annotations

import asyncio
from typing import Final

from gateway.upstream.health import ProbeKind, ProbeSpec, judge_http

MAX_PROBE_BODY: Final = 65536


async def run_probe(spec: ProbeSpec, timeout_s: float) -> tuple[bool, str]:
    """One probe over the network: (passed, reason).

    HTTP probes read the head and then exactly the body its framing says
    (Content-Length, chunked, or up to the close), at most `MAX_PROBE_BODY`
    bytes: a server that keeps the connection open despite `Connection:
    close` must not turn a healthy answer into a timeout.
    """
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(spec.address, spec.port)
            if spec.kind is ProbeKind.TCP:
                return True, "connected"
            writer.write(
                f"GET {spec.path} HTTP/1.1\r\nHost: {spec.host or spec.address}\r\n"
                "User-Agent: portway-health\r\nConnection: close\r\n\r\n".encode("latin-1")
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status, body = _status(head), b""
            if status is None:
                return False, "not an HTTP answer"
            fields = head.lower()
            length = _content_length(fields)
            if length is not None:
                body = await reader.readexactly(min(length, MAX_PROBE_BODY))
            elif b"transfer-encoding: chunked" in fields:
                body = _dechunk(await _read_chunked(reader))
            else:
                body = await reader.read(MAX_PROBE_BODY)
    except TimeoutError:
        return False, f"timeout after {timeout_s:g}s"
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return False, "answer cut short"
    except OSError as exc:
        return False, exc.strerror or type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
    return judge_http(spec, status, body)


def _status(head: bytes) -> int | None:
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])


def _content_length(fields: bytes) -> int | None:
    for line in fields.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return None


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return out
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while b"\r\n0\r\n" not in b"\r\n" + data and len(data) < MAX_PROBE_BODY:
        more = await reader.read(MAX_PROBE_BODY - len(data))
        if not more:
            break
        data += more
    return data
