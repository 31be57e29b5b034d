"""URL rewrite (Gateway API URLRewrite): the path and Host sent upstream.

Constant per rule except for the path itself: the proxy asks
`PathRewrite.target` for the new path of each request of a rule that
rewrites paths (bytes in, bytes out: the prefixes and the replacement are
encoded once, here), and sends `host` (when set) as the upstream Host.
`replaceFullPath` replaces the whole path; `replacePrefixMatch` replaces the
longest of the rule's PathPrefix values that matches the path, element-wise
(`gateway.routing.redirect.replace_prefix` is the same rule on text).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config.model import UrlRewrite
from gateway.routing.redirect import replace_prefix


@dataclass(frozen=True, slots=True)
class PathRewrite:
    """The path half of a URLRewrite (or of a redirect's path modifier)."""

    full_path: str | None
    prefix: str | None
    prefixes: tuple[str, ...]
    """The rule's PathPrefix values, normalised (`/api/` → `/api`, `/` → ``), longest first."""
    _full: bytes | None = field(init=False, repr=False, compare=False)
    _prefixes: tuple[tuple[bytes, bytes], ...] = field(init=False, repr=False, compare=False)
    """(prefix, prefix + "/") per PathPrefix value, as bytes."""
    _replacement: bytes = field(init=False, repr=False, compare=False)
    """The prefix replacement without its trailing "/"."""

    def __post_init__(self) -> None:
        full = self.full_path.encode("latin-1") if self.full_path is not None else None
        object.__setattr__(self, "_full", full)
        prefixes = tuple((p.encode("latin-1"), p.encode("latin-1") + b"/") for p in self.prefixes)
        object.__setattr__(self, "_prefixes", prefixes)
        replacement = (self.prefix or "").rstrip("/").encode("latin-1")
        object.__setattr__(self, "_replacement", replacement)

    def target(self, path: bytes) -> bytes:
        """The path sent upstream for a request path (raw bytes, as received)."""
        if self._full is not None:
            return self._full
        if self.prefix is None:
            return path
        for prefix, with_slash in self._prefixes:
            if path == prefix or path.startswith(with_slash) or not prefix:
                out = self._replacement + path[len(prefix) :]
                return out if out[:1] == b"/" else b"/" + out
        return path

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
