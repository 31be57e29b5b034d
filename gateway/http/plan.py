"""What the HTTP proxy does for a matched rule, prepared once per compiled rule.

A `CompiledRule` states its header filters as name/value pairs; applying them
per request would lowercase, copy and re-join headers every time. A
`RulePlan` holds the same edits as ready bytes (`Name: value\\r\\n` lines to
append, lowercased names to drop) plus the rule's timeouts resolved to plain
floats, so the request path only joins what it must. Plans are memoised by
rule identity (rules are immutable and compared by identity); the memo is
dropped whole when it grows past `_MAX_PLANS`, so rules of replaced tables do
not accumulate.

Also here: the `Via` line per protocol version and the forwarding header
lines of one client connection, both pure byte builders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from gateway.http import head as hh

_MAX_PLANS: Final = 10_000


@dataclass(frozen=True, slots=True)
class RulePlan:
    """A rule's per-request work as bytes and floats (see module docstring)."""

    request_drop: frozenset[bytes]
    """Lowercased request header names removed before forwarding (remove ∪ set)."""
    request_lines: bytes
    """The rule's `set` and `add` request headers, as joined header lines."""
    response_drop: frozenset[bytes]
    response_lines: bytes
    rewrites_path: bool
    host_rewrite: bytes
    """A fixed upstream Host (URLRewrite hostname), or b""."""
    preserve_host: bool
    request_s: float
    per_try_s: float
    """The per-try deadline in seconds, 0.0 when only `request_s` bounds a try."""
    idle_s: float
    """How long the client connection may stay idle after a request of this rule."""


def _lines(pairs: Any) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in pairs)


def build_plan(rule: Any) -> RulePlan:
    """The plan of a `gateway.routing.route.CompiledRule`."""
    retry = rule.retry
    timeouts = rule.timeouts
    per_try = (retry.per_try_timeout_s if retry is not None else None) or (
        timeouts.backend_request_s
    )
    rw = rule.url_rewrite
    return RulePlan(
        request_drop=frozenset(rule.request_remove) | {n for n, _ in rule.request_set},
        request_lines=_lines(rule.request_set) + _lines(rule.request_add),
        response_drop=frozenset(rule.response_remove) | {n for n, _ in rule.response_set},
        response_lines=_lines(rule.response_set) + _lines(rule.response_add),
        rewrites_path=rw is not None
        and (rw.replace_full_path is not None or rw.replace_prefix_match is not None),
        host_rewrite=rule.host_rewrite.encode("latin-1") if rule.host_rewrite else b"",
        preserve_host=bool(rule.preserve_host),
        request_s=float(timeouts.request_s),
        per_try_s=float(per_try or 0.0),
        idle_s=float(timeouts.idle_s),
    )


_PLANS: Final[dict[Any, RulePlan]] = {}


def plan_for(rule: Any) -> RulePlan:
    """The memoised plan of `rule` (one dict lookup on the request path)."""
    plan = _PLANS.get(rule)
    if plan is None:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[rule] = build_plan(rule)
    return plan


_VIA: Final[dict[tuple[str, str], bytes]] = {}


def via_line(version: str, pseudonym: str) -> bytes:
    """`Via: 1.1 <pseudonym>\\r\\n` for the client's HTTP version, memoised."""
    line = _VIA.get((version, pseudonym))
    if line is None:
        proto = b"1.0 " if version == "1.0" else b"1.1 "
        line = _VIA[(version, pseudonym)] = b"Via: " + proto + pseudonym.encode("latin-1") + b"\r\n"
    return line


def forwarding_lines(
    incoming: dict[bytes, bytes] | None,
    *,
    trusted: bool,
    client_ip: bytes,
    proto: bytes,
    host: bytes,
) -> bytes:
    """X-Forwarded-For/-Proto/-Host and Forwarded as joined header lines."""
    return _lines(
        hh.forwarding_headers(
            incoming or {}, trusted=trusted, client_ip=client_ip, proto=proto, host=host
        )
    )


_PLAIN_FORWARDING: Final[dict[tuple[str, bytes, bytes], bytes]] = {}
_MAX_PLAIN_FORWARDING: Final = 4096


def plain_forwarding_lines(client_ip: str, proto: bytes, host: bytes) -> bytes:
    """`forwarding_lines` for a request that brought no forwarding headers we believe.

    The same bytes for every connection from one client address to one Host, so
    they are shared (an idle keep-alive connection keeps them): a memo dropped
    whole when it reaches `_MAX_PLAIN_FORWARDING` entries.
    """
    key = (client_ip, proto, host)
    lines = _PLAIN_FORWARDING.get(key)
    if lines is None:
        if len(_PLAIN_FORWARDING) >= _MAX_PLAIN_FORWARDING:
            _PLAIN_FORWARDING.clear()
        lines = _PLAIN_FORWARDING[key] = forwarding_lines(
            None, trusted=False, client_ip=client_ip.encode("ascii"), proto=proto, host=host
        )
    return lines


_SHARED: Final[dict[bytes, bytes]] = {}


def shared(value: bytes) -> bytes:
    """One copy of header bytes that many idle connections would each keep (the
    tail of a memoised request head: forwarding lines and Via). Bounded like
    the forwarding memo."""
    found = _SHARED.get(value)
    if found is None:
        if len(_SHARED) >= _MAX_PLAIN_FORWARDING:
            _SHARED.clear()
        found = _SHARED[value] = value
    return found
