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


class ListenerHosts:
    """Listeners sharing one address:port, told apart by the request's host (Gateway API).

    A request belongs to the listener whose hostname matches its host most
    specifically: an exact hostname first, then the wildcard with the longest
    suffix (`*.example.com` covers one or more labels in front of
    `example.com`), last a listener without hostnames; None when none matches
    (the request is then answered 404). Only routes attached to that listener
    are considered for it. Resolutions are memoised per host (bounded), like
    `HostIndex.tiers`.
    """

    __slots__ = ("_cache", "catch_all", "exact", "wildcard")

    def __init__(self, listeners: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
        """`listeners`: (name, hostnames) of each listener on the address:port."""
        self.exact: dict[str, str] = {}
        self.wildcard: dict[str, str] = {}
        self.catch_all: str | None = None
        for name, hostnames in listeners:
            if not hostnames and self.catch_all is None:
                self.catch_all = name
            for hostname in hostnames:
                host = hostname.lower().rstrip(".")
                if host.startswith("*."):
                    self.wildcard.setdefault(host[1:], name)
                else:
                    self.exact.setdefault(host, name)
        self._cache: dict[str, str | None] = {}

    def listener_for(self, host: str) -> str | None:
        """The name of the listener serving `host` (port stripped), None when none does."""
        if host in self._cache:
            return self._cache[host]
        name = host.lower().rstrip(".")
        found = self.exact.get(name)
        if found is None and self.wildcard:
            i = name.find(".")
            while i > 0 and found is None:  # longest suffix first
                found = self.wildcard.get(name[i:])
                i = name.find(".", i + 1)
        if found is None:
            found = self.catch_all
        if len(self._cache) >= MAX_CACHED_HOSTS:
            self._cache.clear()
        self._cache[host] = found
        return found
