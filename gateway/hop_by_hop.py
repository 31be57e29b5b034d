"""Hop-by-hop header fields (RFC 9110 section 7.6.1): what a proxy never forwards.

They describe one connection, so each side of the proxy drops them: the
client side from requests (`http.core_client`), the upstream side from
responses (`upstream.response_core`). A Connection header may name more
fields of the same kind; `connection_tokens` reads its list.
"""

from __future__ import annotations

from typing import Final

HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
"""Lowercased names of the fields that are always hop-by-hop."""


def connection_tokens(value: bytes) -> list[bytes]:
    """The lowercased tokens of a Connection header value."""
    return [token.strip().lower() for token in value.split(b",") if token.strip()]
