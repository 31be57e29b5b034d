"""Host → route tiers for one listener (Gateway API hostname precedence).

A request's host selects, in order: the routes naming it exactly, the routes
naming a matching wildcard (`*.example.com` matches one or more labels in
front of `example.com`), longest suffix first, and last the routes naming no
hostname. Each is a tier (`MatchSet`); the first tier with a matching rule
wins, so a more specific hostname always takes precedence but does not
black-hole the paths it does not route. Resolutions are memoised per host
(bounded), so the steady state is one dict lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from gateway.routing.match import MatchSet

MAX_CACHED_HOSTS: Final = 4096


class HostIndex:
    """The tiers of one listener, keyed by exact host and by wildcard suffix."""

    __slots__ = ("_cache", "catch_all", "exact", "wildcard")

    def __init__(
        self,
        exact: Mapping[str, MatchSet],
        wildcard: Mapping[str, MatchSet],
        catch_all: MatchSet | None,
    ) -> None:
        self.exact = dict(exact)
        self.wildcard = dict(wildcard)
        self.catch_all = catch_all
        self._cache: dict[str, tuple[tuple[str, MatchSet], ...]] = {}

    def tiers(self, host: str) -> tuple[tuple[str, MatchSet], ...]:
        """(label, tier) pairs to try in order for `host` (label is for explain)."""
        found = self._cache.get(host)
        if found is not None:
            return found
        name = host.lower().rstrip(".")
        out: list[tuple[str, MatchSet]] = []
        tier = self.exact.get(name)
        if tier is not None:
            out.append((name, tier))
        if self.wildcard:
            i = name.find(".")
            while i > 0:
                tier = self.wildcard.get(name[i:])
                if tier is not None:
                    out.append(("*" + name[i:], tier))
                i = name.find(".", i + 1)
        if self.catch_all is not None:
            out.append(("(no hostnames)", self.catch_all))
        result = tuple(out)
        if len(self._cache) >= MAX_CACHED_HOSTS:
            self._cache.clear()
        self._cache[host] = result
        return result
