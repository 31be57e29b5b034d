"""Client-IP session affinity (Kubernetes `sessionAffinity: ClientIP`).

kube-proxy remembers, per client address, which endpoint served it and sends
the client there again until `timeoutSeconds` pass without traffic. The gateway
does the same per backend. The memory is mutable state, so it lives here and
is passed in (it hangs off `EndpointState`), never inside the immutable
routing table; the clock is injected as `now` (monotonic seconds). The map is
bounded: past `max_entries` the least recently refreshed client is forgotten,
which only costs that client its stickiness.
"""

from __future__ import annotations

DEFAULT_MAX_ENTRIES = 65536


class AffinityState:
    """`(backend, client_ip) → (endpoint key, expiry)`, bounded, refreshed on use."""

    __slots__ = ("_entries", "max_entries")

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str], tuple[str, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, backend: str, client_ip: str, now: float) -> str | None:
        """The endpoint key remembered for this client, unless it has expired."""
        entry = self._entries.get((backend, client_ip))
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[(backend, client_ip)]
            return None
        return entry[0]

    def remember(self, backend: str, client_ip: str, key: str, expires: float) -> None:
        """Pin the client to `key` until `expires`; evicts the stalest entry when full."""
        slot = (backend, client_ip)
        entries = self._entries
        if slot in entries:
            del entries[slot]
        elif len(entries) >= self.max_entries:
            del entries[next(iter(entries))]
        entries[slot] = (key, expires)

    def forget(self, backend: str, client_ip: str) -> None:
        self._entries.pop((backend, client_ip), None)
