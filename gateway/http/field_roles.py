"""Which request header fields are the proxy's business, and which it only forwards.

`http.core_client.RequestCore.on_header` sorts every request field by its
name into one of these roles with one dict lookup: the common names exactly
as clients spell them first (`BY_NAME`: no lowercasing), then the lowercased
name (`BY_LOWER_NAME`); a name in neither is forwarded as it came (unless it
starts with `proxy-`). Host, framing (Content-Length, Transfer-Encoding),
hop-by-hop fields, forwarding fields and the few the gateway reads (Expect,
X-Request-Id, traceparent, Origin) each have a role.
"""

from __future__ import annotations

from typing import Final

HOST: Final = 0
CONTENT_LENGTH: Final = 1
TRANSFER_ENCODING: Final = 2
CONNECTION: Final = 3
UPGRADE: Final = 4
HOP: Final = 5
FORWARDING: Final = 6
EXPECT: Final = 7
REQUEST_ID: Final = 8
FORWARDED_FOR: Final = 9
TRACEPARENT: Final = 10
PLAIN: Final = 11
ORIGIN: Final = 12
BY_LOWER_NAME: Final[dict[bytes, int]] = {
    b"host": HOST,
    b"content-length": CONTENT_LENGTH,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"connection": CONNECTION,
    b"upgrade": UPGRADE,
    b"keep-alive": HOP,
    b"te": HOP,
    b"trailer": HOP,
    b"x-forwarded-for": FORWARDED_FOR,
    b"x-forwarded-proto": FORWARDING,
    b"x-forwarded-host": FORWARDING,
    b"forwarded": FORWARDING,
    b"expect": EXPECT,
    b"x-request-id": REQUEST_ID,
    b"traceparent": TRACEPARENT,
    b"origin": ORIGIN,
}

BY_NAME: Final[dict[bytes, int]] = {
    b"Host": HOST,
    b"Content-Length": CONTENT_LENGTH,
    b"User-Agent": PLAIN,
    b"Accept": PLAIN,
    b"Accept-Encoding": PLAIN,
    b"Accept-Language": PLAIN,
    b"Content-Type": PLAIN,
    b"Cookie": PLAIN,
    b"Referer": PLAIN,
    b"Authorization": PLAIN,
    b"Cache-Control": PLAIN,
    b"Origin": ORIGIN,
    b"If-None-Match": PLAIN,
    b"If-Modified-Since": PLAIN,
}
"""Common header names as clients spell them, sorted without lowercasing first."""
