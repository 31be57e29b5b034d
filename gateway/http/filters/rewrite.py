"""URL rewrite (Gateway API URLRewrite): the path and Host sent upstream.

Constant per rule except for the path itself: the proxy asks `UrlRewrite.path`
for the new path of each request of a rule that rewrites paths, and sends
`host` (when set) as the upstream Host. `replaceFullPath` replaces the whole
path; `replacePrefixMatch` replaces the longest of the rule's PathPrefix
values that matches the path (`gateway.routing.redirect.replace_prefix`).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.model import UrlRewrite
from gateway.routing.redirect import replace_prefix


@dataclass(frozen=True, slots=True)
class PathRewrite:
    """The path half of a URLRewrite (or of a redirect's path modifier)."""

    full_path: str | None
    prefix: str | None
    prefixes: tuple[str, ...]
    """The rule's PathPrefix values, normalised (`/api/` → `/api`, `/` → ``), longest first."""

    def path(self, path: str) -> str:
        if self.full_path is not None:
            return self.full_path
        if self.prefix is not None:
            return replace_prefix(path, self.prefixes, self.prefix)
        return path


def path_rewrite(rewrite: UrlRewrite | None, prefixes: tuple[str, ...]) -> PathRewrite | None:
    """The rule's path rewrite, None when it rewrites no path."""
    if rewrite is None:
        return None
    if rewrite.replace_full_path is None and rewrite.replace_prefix_match is None:
        return None
    return PathRewrite(rewrite.replace_full_path, rewrite.replace_prefix_match, prefixes)
