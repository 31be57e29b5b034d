"""What the admin API accepts of a request, and every refusal as a JSON error.

Each route takes a fixed set of query parameters (`QUERY_KEYS`); anything
else is a 400 naming the closest one it does take, before the handler runs
(`json_errors`, the app's middleware). Parameters are read here: yes/no flags
(`flag`) and `/explain`'s request (`parse_explain_query`). A request the API
cannot act on is a `BadRequest` (400); an unknown path is a 404 listing the
paths there are; a method a path does not take is a 405. Every error is JSON
`{"error": ...}`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.routing.decision import RequestFacts


class BadRequest(Exception):
    """A request the API cannot act on; the message says what is wrong (answered 400)."""


_METHOD = re.compile(r"^[A-Za-z]+$")
_FLAG_VALUES = frozenset({"", "0", "1", "true", "false"})
QUERY_KEYS: dict[str, tuple[str, ...]] = {
    "/healthz": (),
    "/readyz": (),
    "/config": (),
    "/routes": (),
    "/tls": (),
    "/drain": ("endpoint", "undo"),
    "/endpoints": ("limit", "after", "backend"),
    "/explain": ("request", "from", "header", "listener"),
    "/metrics": ("endpoints",),
}
"""The parameters each route of `gateway.ops.admin` takes; anything else is a 400."""


def check_query(path: str, query: Mapping[str, str]) -> None:
    """`BadRequest` for a parameter `path` does not take (with the closest it does)."""
    allowed = QUERY_KEYS.get(path)
    if allowed is None:
        return  # not a route of gateway.ops.admin (the dashboard checks its own)
    for key in query:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            takes = ", ".join(allowed) or "no parameters"
            raise BadRequest(f"unknown parameter {key!r}{hint} ({path} takes: {takes})")


def flag(query: Mapping[str, str], key: str) -> bool:
    """A yes/no parameter: absent, 0 or false is no; 1 or true is yes; else `BadRequest`."""
    value = query.get(key, "")
    if value not in _FLAG_VALUES:
        raise BadRequest(f"{key}={value!r}: write {key}=1 or {key}=0")
    return value in ("1", "true")


def parse_explain_query(query: Mapping[str, str]) -> RequestFacts:
    """`request=GET https://host/path?q`, `from=IP`, `header=name:value` (repeatable).

    Raises `BadRequest` for a request that is not `METHOD URL` with an absolute
    http(s) URL, an address that is not one, or a header without a colon.
    """
    words = query.get("request", "").split()
    if len(words) != 2 or not _METHOD.match(words[0]):
        raise BadRequest("request is 'METHOD URL', e.g. request=GET%20http://shop.example/")
    method, url = words
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"request URL {url!r} is not absolute (http:// or https:// and a host)")
    client_ip = query.get("from", "127.0.0.1")
    try:
        ipaddress.ip_address(client_ip)
    except ValueError:
        raise BadRequest(f"from={client_ip!r} is not an IP address") from None
    host = parts.hostname.lower()
    headers = {"host": host}
    getall = getattr(query, "getall", None)
    for raw in getall("header", []) if getall else []:
        name, colon, value = raw.partition(":")
        if not colon or not name.strip():
            raise BadRequest(f"header={raw!r}: write header=name:value")
        headers[name.strip().lower()] = value.strip()
    return RequestFacts(
        method=method.upper(),
        host=host,
        path=parts.path or "/",
        query=parts.query,
        headers=headers,
        client_ip=client_ip,
        listener=query.get("listener", ""),
    )


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error as JSON: unknown paths (404) and methods (405), bad requests (400)."""
    try:
        check_query(request.path, request.query)
        return await handler(request)
    except BadRequest as exc:
        return error(400, str(exc))
    except web.HTTPNotFound:
        paths = sorted({r.canonical for r in request.app.router.resources()})
        return error(404, f"no such admin path {request.path!r}", paths=paths)
    except web.HTTPMethodNotAllowed as exc:
        allowed = sorted(exc.allowed_methods)
        return error(405, f"{request.method} is not allowed on {request.path}", allowed=allowed)


def unknown_name(kind: str, name: str, known: list[str]) -> str:
    """No such backend (or other table name), with the closest one there is."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no {kind} {name!r} in the active routing table{hint}"
