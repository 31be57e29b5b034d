"""The facts of one request that routing may look at (filled by the proxy per request).

Its own module, importing nothing of the routing core, so that every routing
module can import it at run time without an import cycle (the compiled build
needs the types of dataclass fields to exist when the class is created).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestFacts:
    """The facts of one request that routing may look at."""

    method: str
    host: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    client_ip: str = ""
    listener: str = ""
    _cookies: dict[str, str] | None = None

    def cookie(self, name: str) -> str | None:
        """A request cookie's value, parsing the Cookie header at most once."""
        if self._cookies is None:
            self._cookies = parse_cookies(self.headers.get("cookie", ""))
        return self._cookies.get(name)


def parse_cookies(header: str) -> dict[str, str]:
    """RFC 6265 `name=value; name2=value2`, lenient about spaces and bad pairs."""
    out: dict[str, str] = {}
    if not header:
        return out
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            out.setdefault(name, value.strip('"'))
    return out
