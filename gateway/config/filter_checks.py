"""Cross-reference checks of a rule's filters (part of `gateway.config.semantic`).

What pydantic cannot see from one value: a rule with no backend must answer
every request itself (a redirect); a prefix replacement needs a PathPrefix
match to replace; a mirror names a backend that exists and that the mirror
can reach (plain HTTP); two ways of saying the same path are one too many;
a CORS origin is `*` or `scheme://host[:port]` with at most a leading `*.`
label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from gateway.config.errors import Path
from gateway.config.model import Backend, PathMatchType, Rule

Report = Callable[..., None]
"""`issue_report.IssueReport.add`: (path, message, *, at_key=False, warn=False)."""

ORIGIN: Final = re.compile(r"^\*$|^[a-z][a-z0-9+.-]*://(\*\.)?[^*/:]+(:\d{1,5})?$", re.IGNORECASE)


def check_filters(
    add: Report,
    unknown: Callable[[str, str, Mapping[str, Backend]], str],
    path: Path,
    rule: Rule,
    backends: Mapping[str, Backend],
) -> set[str]:
    """Report every filter problem of `rule`; returns the mirror backends it uses."""
    used: set[str] = set()
    filters = rule.filters
    fpath = (*path, "filters")
    if not rule.backend_refs and filters.redirect is None:
        add(
            path,
            "a rule without backendRefs must answer every request itself: "
            "add `filters.redirect` or a backendRef",
        )
    prefix_only = all(m.path.type is PathMatchType.PATH_PREFIX for m in rule.matches)
    redirect = filters.redirect
    if redirect is not None:
        full = [
            k
            for k, v in (
                ("path", redirect.path),
                ("replaceFullPath", redirect.replace_full_path),
                ("replacePrefixMatch", redirect.replace_prefix_match),
            )
            if v is not None
        ]
        if len(full) > 1:
            add(
                (*fpath, "redirect"),
                f"set one of {', '.join(f'`{k}`' for k in full)}, not several",
                at_key=True,
            )
        if redirect.replace_prefix_match is not None and not prefix_only:
            add(
                (*fpath, "redirect", "replacePrefixMatch"),
                "replacePrefixMatch replaces the matched PathPrefix: every match of this rule "
                "must be a PathPrefix",
                at_key=True,
            )
    rewrite = filters.url_rewrite
    if rewrite is not None and rewrite.replace_prefix_match is not None and not prefix_only:
        add(
            (*fpath, "urlRewrite", "replacePrefixMatch"),
            "replacePrefixMatch replaces the matched PathPrefix: every match of this rule "
            "must be a PathPrefix",
            at_key=True,
        )
    for index, mirror in enumerate(filters.mirrors):
        mpath = (*fpath, "mirrors", index, "backend")
        backend = backends.get(mirror.backend)
        if backend is None:
            add(mpath, unknown("backend", mirror.backend, backends))
            continue
        used.add(mirror.backend)
        if backend.tls:
            add(
                mpath,
                "not supported yet: mirroring to a backend with `tls` (copies go as plain HTTP)",
            )
    cors = filters.cors
    if cors is not None:
        for index, origin in enumerate(cors.allow_origins):
            if not ORIGIN.match(origin):
                add(
                    (*fpath, "cors", "allowOrigins", index),
                    f"an origin is `*` or scheme://host[:port], with at most a leading `*.` "
                    f"label: {origin!r}",
                )
    return used
