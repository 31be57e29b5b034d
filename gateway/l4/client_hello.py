"""Read the SNI host name out of a TLS ClientHello without terminating TLS (pure).

TLS passthrough listeners route on the server name the client asks for, then
forward the very bytes they peeked. The ClientHello may span several TLS
records (large post-quantum key shares); `parse_sni` reassembles the
handshake message across records and answers `NEED_MORE` until it is whole.
Layout (RFC 8446 §4.1.2, RFC 6066 §3): record header (type 22, version,
length), handshake header (type 1, 24-bit length), legacy_version, random,
session id, cipher suites, compression methods, extensions; extension 0 is
server_name, whose list holds entries of type 0 (host_name).
"""

from __future__ import annotations

MAX_HELLO_BYTES = 64 * 1024
"""Give up on clients whose ClientHello is larger than this (none legitimate are)."""

NEED_MORE: None = None
_HANDSHAKE = 22
_CLIENT_HELLO = 1
_SERVER_NAME = 0


class ClientHelloError(ValueError):
    """The bytes are not a TLS ClientHello this proxy can route."""


def handshake_bytes(data: bytes) -> bytes | None:
    """The first handshake message reassembled from records, or None if incomplete."""
    out = bytearray()
    pos = 0
    need = -1
    while True:
        if need >= 0 and len(out) >= need:
            return bytes(out[:need])
        if len(data) - pos < 5:
            return None
        if data[pos] != _HANDSHAKE:
            raise ClientHelloError("not a TLS handshake record")
        if data[pos + 1] != 3:
            raise ClientHelloError("unsupported TLS record version")
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if length == 0 or length > 18432:
            raise ClientHelloError("bad TLS record length")
        if len(data) - pos - 5 < length:
            return None
        out += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if need < 0 and len(out) >= 4:
            if out[0] != _CLIENT_HELLO:
                raise ClientHelloError("first handshake message is not a ClientHello")
            need = 4 + int.from_bytes(out[1:4], "big")
            if need > MAX_HELLO_BYTES:
                raise ClientHelloError("ClientHello too large")


def parse_sni(data: bytes) -> str | None:
    """The requested host name (lowercased), `""` when the client sent none, None if incomplete.

    Raises `ClientHelloError` for bytes that are not a well-formed ClientHello.
    """
    if len(data) > MAX_HELLO_BYTES + 5 * 8:
        raise ClientHelloError("ClientHello too large")
    hello = handshake_bytes(data)
    if hello is None:
        return NEED_MORE
    try:
        return _server_name(memoryview(hello)[4:])
    except IndexError:
        raise ClientHelloError("truncated ClientHello") from None


def _take(body: memoryview, pos: int, size_len: int) -> tuple[memoryview, int]:
    if pos + size_len > len(body):
        raise IndexError
    size = int.from_bytes(body[pos : pos + size_len], "big")
    end = pos + size_len + size
    if end > len(body):
        raise IndexError
    return body[pos + size_len : end], end


def _server_name(body: memoryview) -> str:
    pos = 2 + 32  # legacy_version, random
    _, pos = _take(body, pos, 1)  # session id
    _, pos = _take(body, pos, 2)  # cipher suites
    _, pos = _take(body, pos, 1)  # compression methods
    if pos == len(body):
        return ""  # no extensions at all
    extensions, _ = _take(body, pos, 2)
    pos = 0
    while pos < len(extensions):
        if pos + 4 > len(extensions):
            raise IndexError
        ext_type = int.from_bytes(extensions[pos : pos + 2], "big")
        data, pos = _take(extensions, pos + 2, 2)
        if ext_type != _SERVER_NAME:
            continue
        names, _ = _take(data, 0, 2)
        npos = 0
        while npos < len(names):
            name_type = names[npos]
            name, npos = _take(names, npos + 1, 2)
            if name_type == 0:
                try:
                    return bytes(name).decode("ascii").lower().rstrip(".")
                except UnicodeDecodeError:
                    raise ClientHelloError("server name is not ASCII") from None
        return ""
    return ""
