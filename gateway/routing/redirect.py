"""Where a RequestRedirect sends a request: the Location, as a pure function.

The gateway's redirect filter (`gateway.http.filters.redirect`) answers with
it; `routing.explain` and `portway routes explain` show it. Gateway API
rules: the scheme is the request's unless `scheme` is set; the hostname is
the request's (without port) unless `hostname` is set; the port is `port`
when set, else the scheme's well-known port when `scheme` is set, else the
port the client used; a port that is the scheme's default is left out. The
path is replaced by `replaceFullPath` (or its shorthand `path`) or has its
matched prefix replaced (`replacePrefixMatch`); the query stays.
"""

from __future__ import annotations

from typing import Final

from gateway.config.model import RequestRedirect

DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def replace_prefix(path: str, prefixes: tuple[str, ...], replacement: str) -> str:
    """`path` with the longest matching of `prefixes` replaced, element-wise.

    `prefixes` are normalised (`/api/` → `/api`, `/` → ``) and longest first.
    `/api` → `/v2` turns `/api/x` into `/v2/x`; `/api` → `/` turns `/api/x`
    into `/x` (never `//x`). A path no prefix matches is returned as is.
    """
    for prefix in prefixes:
        if path == prefix or path.startswith(prefix + "/") or prefix == "":
            out = replacement.rstrip("/") + path[len(prefix) :]
            return out if out.startswith("/") else "/" + out
    return path


def redirect_location(
    redirect: RequestRedirect,
    prefixes: tuple[str, ...],
    *,
    scheme: str,
    host: str,
    port: int | None,
    path: str,
    query: str,
) -> str:
    """The Location of `redirect` for a request (see the module docstring)."""
    new_scheme = redirect.scheme or scheme
    if redirect.port is not None:
        port = redirect.port
    elif redirect.scheme is not None:
        port = None
    hostname = redirect.hostname or host
    if ":" in hostname:
        hostname = f"[{hostname}]"
    authority = hostname
    if port is not None and port != DEFAULT_PORTS[new_scheme]:
        authority = f"{hostname}:{port}"
    full = redirect.path if redirect.path is not None else redirect.replace_full_path
    if full is not None:
        path = full
    elif redirect.replace_prefix_match is not None:
        path = replace_prefix(path, prefixes, redirect.replace_prefix_match)
    return f"{new_scheme}://{authority}{path}" + (f"?{query}" if query else "")
