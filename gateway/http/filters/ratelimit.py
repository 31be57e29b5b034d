"""Rate limits: token buckets per key, as one float per key (GCRA), bounded in memory.

Theory of operation. A token bucket of `requests + burst` tokens refilled at
`requests / per` tokens a second is the same thing as the generic cell rate
algorithm (GCRA): each key keeps only its *theoretical arrival time* (TAT),
the moment its bucket will be full again. A request at `now` is allowed when
`max(TAT, now) + interval - now <= capacity * interval` and then moves TAT
forward by one `interval`; otherwise it is refused and may retry after the
excess. One float per key, no timer, no refill loop; `BucketStore.take` is
pure given `now` (the loop clock, injected).

Memory is bounded: at most `maxKeys` buckets per rule. When the store is full
it first forgets buckets that are full again (their TAT is in the past: a
new bucket would be identical), and if a flood of distinct keys keeps every
bucket busy it forgets the oldest-created half. A forgotten key starts over
with a full bucket, so the bound trades a little precision for never growing
without limit. Measured in `tests/gateway/http/filters/test_rate_limit.py`.

Stores outlive tables: a rule's store is looked up by (route, rule position,
rate-limit config) when a table is compiled (`bucket_store`), so a hot
reload that leaves a rule's limit unchanged keeps its buckets, and a changed
limit starts fresh without touching the others.

Refused requests get `429` with `Retry-After` and the IETF draft's
`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and
`RateLimit-Policy` headers, `portway-error: rate_limited`.
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING, Final

from gateway.config.resilience import RateLimit
from gateway.http.filters.base import ExchangeView, FilterStage, LocalAnswer
from gateway.http.filters.networks import client_address

if TYPE_CHECKING:
    from gateway.routing.facts import RequestFacts


class BucketStore:
    """GCRA buckets of one rule: key → theoretical arrival time (see module docstring)."""

    __slots__ = ("__weakref__", "capacity", "interval_s", "limit", "max_keys", "tat", "window_s")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.interval_s = limit.per_s / limit.requests
        self.capacity = limit.requests + limit.burst
        self.window_s = self.capacity * self.interval_s
        self.max_keys = limit.max_keys
        self.tat: dict[str, float] = {}

    def take(self, key: str, now: float) -> float:
        """Take one token for `key`: 0.0 when allowed, else the seconds until one is free."""
        tat = self.tat.get(key)
        if tat is None or tat < now:
            tat = now
        new_tat = tat + self.interval_s
        excess = new_tat - now - self.window_s
        if excess > 1e-9:
            return excess
        if key not in self.tat and len(self.tat) >= self.max_keys:
            self._evict(now)
        self.tat[key] = new_tat
        return 0.0

    def remaining(self, key: str, now: float) -> int:
        """Tokens left for `key` at `now`."""
        tat = max(self.tat.get(key, now), now)
        return max(0, int((self.window_s - (tat - now)) / self.interval_s + 1e-9))

    def _evict(self, now: float) -> None:
        tat = self.tat
        full = [key for key, t in tat.items() if t <= now]
        for key in full:
            del tat[key]
        if len(tat) >= self.max_keys:
            for key in list(tat)[: max(1, len(tat) // 2)]:  # oldest-created first
                del tat[key]


_STORES: Final[weakref.WeakValueDictionary[tuple[str, int, RateLimit], BucketStore]] = (
    weakref.WeakValueDictionary()
)


def bucket_store(route: str, rule_index: int, limit: RateLimit) -> BucketStore:
    """The store of this rule's limit, the same object across reloads while it is unchanged."""
    key = (route, rule_index, limit)
    store = _STORES.get(key)
    if store is None:
        store = _STORES[key] = BucketStore(limit)
    return store


class RateLimitFilter:
    """The HTTP filter: one token per request from the key's bucket, or 429."""

    __slots__ = ("header", "identity", "key", "policy", "store")

    stage: Final = FilterStage.RATE_LIMIT

    def __init__(self, store: BucketStore, *, identity_header: str = "x-portway-identity") -> None:
        limit = store.limit
        self.store = store
        self.key = limit.key
        self.header = (limit.header or "").lower().encode()
        self.identity = identity_header.lower().encode()
        self.policy = b"%d;w=%s" % (limit.requests, _seconds(limit.per_s))

    def on_request(self, ex: ExchangeView, facts: RequestFacts, now: float) -> LocalAnswer | None:
        key = self._key(ex, facts)
        wait_s = self.store.take(key, now)
        if not wait_s:
            return None
        limit = self.store.limit
        retry = b"%d" % math.ceil(wait_s)
        headers = (
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"portway-error", b"rate_limited"),
            (b"retry-after", retry),
            (b"ratelimit-limit", b"%d" % limit.requests),
            (b"ratelimit-remaining", b"0"),
            (b"ratelimit-reset", retry),
            (b"ratelimit-policy", self.policy),
        )
        return LocalAnswer(429, headers, b"portway: rate limited\n", "rate_limited")

    def _key(self, ex: ExchangeView, facts: RequestFacts) -> str:
        kind = self.key
        if kind == "client_ip":
            fwd = ex.fwd
            return client_address(
                facts.client_ip, fwd.get(b"x-forwarded-for") if fwd is not None else None
            )
        if kind == "route":
            return ""
        wanted = self.header if kind == "header" else self.identity
        for name, value in ex.headers:
            if name.lower() == wanted:
                return value.decode("latin-1")
        return ""  # requests without the header share one bucket


def _seconds(value: float) -> bytes:
    return b"%d" % value if float(value).is_integer() else b"%g" % value
