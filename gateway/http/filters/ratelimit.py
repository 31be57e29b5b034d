"""Rate limits: token buckets per key, as one float per key (GCRA), bounded in memory.

Theory of operation. Each rule's buckets are a store of GCRA times
(`gcra`: one float per key, no timer, no refill loop), looked up by the
request's key and charged with the loop clock's `now`. Where the store lives
is the rule's `scope`: `worker` keeps it in this process (`BucketStore`, a
dict), `shared` in the table every worker of the gateway maps
(`shared_buckets`), so `--workers N` does not multiply the limit. Without a
shared table (one process) both are the same thing and use `BucketStore`.
Across gateway replicas each replica counts alone (out of scope).

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
from typing import TYPE_CHECKING, Final, Protocol

from mypy_extensions import mypyc_attr

from gateway.config.resilience import RateLimit
from gateway.http.filters.base import ExchangeView, FilterStage, LocalAnswer
from gateway.http.filters.gcra import Gcra
from gateway.http.filters.networks import client_address
from gateway.http.filters.shared_buckets import SharedBucketStore, attached, rule_salt

if TYPE_CHECKING:
    from gateway.routing.facts import RequestFacts


class Buckets(Protocol):
    """One rule's buckets, wherever they live."""

    @property
    def limit(self) -> RateLimit: ...

    def take(self, key: str, now: float) -> float:
        """Take one token for `key`: 0.0 when allowed, else the seconds until one is free."""
        ...

    def remaining(self, key: str, now: float) -> int:
        """Tokens left for `key` at `now`."""
        ...


@mypyc_attr(native_class=False)  # compiled: `bucket_store` keeps stores weakly
class BucketStore:
    """GCRA buckets of one rule in this process: key → theoretical arrival time."""

    __slots__ = ("__weakref__", "gcra", "limit", "max_keys", "tat")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.gcra = Gcra.of(limit)
        self.max_keys = limit.max_keys
        self.tat: dict[str, float] = {}

    def take(self, key: str, now: float) -> float:
        """Take one token for `key`: 0.0 when allowed, else the seconds until one is free."""
        tat = self.tat
        answer = self.gcra.admit(tat.get(key, 0.0), now)
        if answer <= 0.0:
            return -answer
        if key not in tat and len(tat) >= self.max_keys:
            self._evict(now)
        tat[key] = answer
        return 0.0

    def remaining(self, key: str, now: float) -> int:
        """Tokens left for `key` at `now`."""
        return self.gcra.remaining(self.tat.get(key, 0.0), now)

    def _evict(self, now: float) -> None:
        tat = self.tat
        full = [key for key, t in tat.items() if t <= now]
        for key in full:
            del tat[key]
        if len(tat) >= self.max_keys:
            for key in list(tat)[: max(1, len(tat) // 2)]:  # oldest-created first
                del tat[key]


_STORES: Final[weakref.WeakValueDictionary[tuple[str, int, RateLimit], Buckets]] = (
    weakref.WeakValueDictionary()
)


def bucket_store(route: str, rule_index: int, limit: RateLimit) -> Buckets:
    """The store of this rule's limit, the same object across reloads while it is unchanged."""
    key = (route, rule_index, limit)
    store = _STORES.get(key)
    if store is None:
        shared = attached() if limit.scope == "shared" else None
        if shared is None:
            store = BucketStore(limit)
        else:
            table, worker = shared
            salt = rule_salt(route, rule_index, limit)
            store = SharedBucketStore(table, limit, salt, worker=worker)
        _STORES[key] = store
    return store


class RateLimitFilter:
    """The HTTP filter: one token per request from the key's bucket, or 429."""

    __slots__ = ("header", "identity", "key", "policy", "store")

    stage: Final = FilterStage.RATE_LIMIT

    def __init__(self, store: Buckets, *, identity_header: str = "x-portway-identity") -> None:
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
