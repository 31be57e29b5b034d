"""A dict memo that forgets everything at once when full: for sharing that lives as long as
the process.

Theory of operation. The record decoder and parser hand out one object per recurring value
(a node, a node or port list, a zone list) and the routing expansion one `Site` per
(region, zone, node), across every record and table the process ever builds. Their keys
churn slowly (nodes replaced, node lists rewritten), so a plain dict would only grow. An LRU
would pay bookkeeping on every hit; clearing the whole memo when it reaches its bound costs
nothing on a hit and only loses sharing for a while: values handed out before stay valid,
and equal values built afterwards are shared among themselves again.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """Values by key, all forgotten when the next `put` would take `held` past `limit`.

    Each `put` counts its `cost` towards `limit`: 1 by default (`limit` is then a number of
    entries), or a size (the decoder counts bytes of text). `held` is the cost put since the
    memo was last cleared; a key put again counts again. So the memo never holds more than
    `limit`, unless a single put alone costs more.
    """

    __slots__ = ("_entries", "held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._entries: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        """The value remembered under `key`, or None."""
        return self._entries.get(key)

    def put(self, key: K, value: V, cost: int = 1) -> V:
        """Remember `value` under `key`, first forgetting everything if `cost` more would pass
        `limit`; returns `value`."""
        if self.held + cost > self.limit:
            self._entries.clear()
            self.held = 0
        self._entries[key] = value
        self.held += cost
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)
