"""Rate limits as plain values: GCRA buckets, 429 headers, reload survival, bounded memory."""

from __future__ import annotations

import gc
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from gateway.config.resilience import RateLimit
from gateway.http.exchange import Exchange
from gateway.http.filters.ratelimit import BucketStore, RateLimitFilter, bucket_store
from gateway.routing.facts import RequestFacts


def request(*headers: tuple[bytes, bytes]) -> Exchange:
    return Exchange(b"GET", b"/", b"", "1.1", b"h", list(headers), b"", None)


def test_bucket_allows_requests_plus_burst_then_refills_at_the_rate() -> None:
    store = BucketStore(RateLimit(requests=2, per_s=10.0, burst=1))
    assert [store.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert store.take("a", 0.0) == 5.0  # one token every 5 s
    assert store.take("b", 0.0) == 0.0  # other keys have their own bucket
    assert store.take("a", 4.9) > 0
    assert store.take("a", 5.0) == 0.0
    assert store.remaining("a", 5.0) == 0
    assert store.remaining("a", 20.0) == 3


@given(
    st.integers(1, 20),
    st.integers(0, 5),
    st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=200),
)
def test_no_window_ever_admits_more_than_capacity_plus_refill(
    requests: int, burst: int, times: list[float]
) -> None:
    limit = RateLimit(requests=requests, per_s=10.0, burst=burst)
    store = BucketStore(limit)
    allowed = [t for t in sorted(times) if store.take("k", t) == 0.0]
    for start in allowed:
        in_window = [t for t in allowed if start <= t < start + 10.0]
        assert len(in_window) <= requests + burst + requests


def test_refusal_is_429_with_retry_after_and_ratelimit_headers() -> None:
    limiter = RateLimitFilter(bucket_store("r", 0, RateLimit(requests=1, per_s=10.0)))
    facts = RequestFacts("GET", "h", "/", client_ip="192.0.2.1")
    assert limiter.on_request(request(), facts, 100.0) is None
    answer = limiter.on_request(request(), facts, 101.0)
    assert answer is not None and answer.status == 429 and answer.cause == "rate_limited"
    headers = dict(answer.headers)
    assert headers[b"retry-after"] == b"9"
    assert headers[b"ratelimit-limit"] == b"1"
    assert headers[b"ratelimit-remaining"] == b"0"
    assert headers[b"ratelimit-reset"] == b"9"
    assert headers[b"ratelimit-policy"] == b"1;w=10"
    other = RequestFacts("GET", "h", "/", client_ip="192.0.2.2")
    assert limiter.on_request(request(), other, 101.0) is None


def test_header_and_identity_keys() -> None:
    by_header = RateLimitFilter(
        bucket_store("r", 1, RateLimit(requests=1, per_s=60.0, key="header", header="X-Tenant"))
    )
    facts = RequestFacts("GET", "h", "/")
    assert by_header.on_request(request((b"x-tenant", b"a")), facts, 0.0) is None
    assert by_header.on_request(request((b"X-Tenant", b"a")), facts, 0.0) is not None
    assert by_header.on_request(request((b"X-Tenant", b"b")), facts, 0.0) is None
    by_identity = RateLimitFilter(
        bucket_store("r", 2, RateLimit(requests=1, per_s=60.0, key="identity"))
    )
    assert by_identity.on_request(request((b"x-portway-identity", b"alice")), facts, 0.0) is None
    assert by_identity.on_request(request((b"x-portway-identity", b"bob")), facts, 0.0) is None
    assert by_identity.on_request(request((b"x-portway-identity", b"bob")), facts, 0.0)


def test_buckets_survive_a_reload_of_an_unchanged_rule_and_reset_when_it_changes() -> None:
    first = bucket_store("api", 0, RateLimit(requests=1, per_s=60.0))
    first.take("c", 0.0)
    assert bucket_store("api", 0, RateLimit(requests=1, per_s=60.0)) is first
    changed = bucket_store("api", 0, RateLimit(requests=2, per_s=60.0))
    assert changed is not first and changed.take("c", 0.0) == 0.0
    assert bucket_store("api", 0, RateLimit(requests=1, per_s=60.0)).take("c", 1.0) > 0


def test_a_flood_of_distinct_keys_stays_within_max_keys() -> None:
    store = BucketStore(RateLimit(requests=5, per_s=60.0, max_keys=1000))
    for i in range(50_000):
        store.take(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", i * 1e-4)
    assert len(store.tat) <= 1000
    # buckets full again are forgotten first: nothing older than the window survives needlessly
    store2 = BucketStore(RateLimit(requests=1, per_s=1.0, max_keys=10))
    for i in range(10):
        store2.take(str(i), 0.0)
    store2.take("late", 5.0)
    assert list(store2.tat) == ["late"]


def test_memory_per_key_is_measured_and_small() -> None:
    n = 100_000
    store = BucketStore(RateLimit(requests=5, per_s=60.0, max_keys=n))
    keys = [f"198.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for key in keys:
        store.take(key, 0.0)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_key = (after - before) / n
    print(f"rate limit bucket: {per_key:.1f} bytes per key (dict slot + float; key str extra)")
    assert per_key < 120
