"""Shared rate limit buckets: one table in shared memory, several workers' views of it."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
import timeit
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.model import GatewayConfig
from gateway.config.resilience import RateLimit
from gateway.http.filters import shared_buckets
from gateway.http.filters.ratelimit import BucketStore, bucket_store
from gateway.http.filters.shared_buckets import (
    MIN_SLOTS,
    SharedBucketStore,
    SharedBucketTable,
    rule_salt,
    table_slots,
)

ROOT = Path(__file__).resolve().parents[4]
LIMIT = RateLimit(requests=2, per_s=10.0, burst=1)
SALT = rule_salt("api", 0, LIMIT)


def workers(n: int, limit: RateLimit = LIMIT, slots: int = 64) -> list[SharedBucketStore]:
    """One store per worker, each on its own mapping of one table (as separate processes)."""
    table = SharedBucketTable.create(slots, n)
    views = [table] + [SharedBucketTable(table.fd) for _ in range(n - 1)]
    salt = rule_salt("api", 0, limit)
    return [SharedBucketStore(view, limit, salt, worker=i) for i, view in enumerate(views)]


def test_workers_share_each_key_s_bucket_through_their_own_mappings() -> None:
    first, second = workers(2)
    assert [first.take("a", 100.0), second.take("a", 100.0), first.take("a", 100.0)] == [0.0] * 3
    assert second.take("a", 100.0) == pytest.approx(5.0)  # capacity 3, one token every 5 s
    assert first.take("a", 100.0) == pytest.approx(5.0)
    assert second.take("b", 100.0) == 0.0  # other keys have their own bucket
    assert first.take("a", 105.0) == 0.0  # refilled for both
    assert second.take("a", 105.0) > 0
    assert first.remaining("a", 120.0) == second.remaining("a", 120.0) == 3


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(0, 3),
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from("abc"), st.floats(0, 3, allow_nan=False)),
        min_size=1,
        max_size=80,
    ),
)
def test_shared_buckets_answer_as_one_local_store_would(
    requests: int, burst: int, steps: list[tuple[int, str, float]]
) -> None:
    limit = RateLimit(requests=requests, per_s=10.0, burst=burst)
    local = BucketStore(limit)
    stores = workers(3, limit)
    now = 1000.0
    for worker, key, dt in steps:
        now += dt
        assert stores[worker].take(key, now) == pytest.approx(local.take(key, now), abs=1e-6)


def test_rules_do_not_share_buckets_and_a_changed_limit_starts_afresh() -> None:
    table = SharedBucketTable.create(64, 1)
    one = RateLimit(requests=1, per_s=60.0)
    two = RateLimit(requests=2, per_s=60.0)
    api = SharedBucketStore(table, one, rule_salt("api", 0, one), worker=0)
    web = SharedBucketStore(table, one, rule_salt("web", 0, one), worker=0)
    changed = SharedBucketStore(table, two, rule_salt("api", 0, two), worker=0)
    assert api.take("c", 10.0) == 0.0 and api.take("c", 10.0) > 0
    assert web.take("c", 10.0) == 0.0
    assert changed.take("c", 10.0) == 0.0
    again = SharedBucketStore(table, one, rule_salt("api", 0, one), worker=0)  # a reload
    assert again.take("c", 11.0) > 0


def test_a_full_set_gives_up_a_refilled_slot_first_then_the_one_closest_to_full() -> None:
    table = SharedBucketTable.create(8, 1)  # one set of eight slots
    limit = RateLimit(requests=1, per_s=10.0)
    store = SharedBucketStore(table, limit, rule_salt("r", 0, limit), worker=0)
    for i in range(8):  # k0 is full again at 110.0, k1 at 110.1, ...
        assert store.take(f"k{i}", 100.0 + i / 10) == 0.0
    assert table.used(105.0) == 8
    assert store.take("late", 110.05) == 0.0  # takes k0's refilled slot
    assert store.take("k1", 110.05) > 0  # the others keep their buckets
    assert store.take("later", 110.06) == 0.0  # none refilled: k1 (full soonest) goes
    assert store.take("k1", 110.06) == 0.0  # ... and starts over with a full bucket
    assert store.take("k7", 110.06) > 0


def test_a_worker_notices_another_took_its_key_s_slot() -> None:
    first, second = workers(2, RateLimit(requests=1, per_s=10.0), slots=8)
    assert first.take("x", 100.0) == 0.0
    for i in range(8):  # the other worker fills the only set with fresher buckets
        second.take(f"k{i}", 100.5 + i)
    assert first.take("x", 108.6) == 0.0  # its slot was given up: a full bucket again
    assert first.take("x", 108.6) > 0


def test_the_per_worker_key_cache_is_bounded_by_max_keys() -> None:
    limit = RateLimit(requests=5, per_s=60.0, max_keys=100)
    table = SharedBucketTable.create(1024, 1)
    store = SharedBucketStore(table, limit, rule_salt("r", 0, limit), worker=0)
    for i in range(1000):
        store.take(f"10.0.{i >> 8}.{i & 255}", 1.0)
    assert len(store.cache) <= 100


def test_the_table_is_sized_for_the_shared_rules_max_keys() -> None:
    def config(*limits: dict[str, object]) -> GatewayConfig:
        from pydantic import TypeAdapter

        rules = [{"backendRefs": [{"name": "b"}], "rateLimit": limit} for limit in limits]
        rules = rules or [{"backendRefs": [{"name": "b"}]}]
        return TypeAdapter(GatewayConfig).validate_python(
            {
                "version": 1,
                "listeners": [{"name": "web", "protocol": "HTTP", "port": 8080}],
                "routes": [{"name": "r", "rules": rules}],
                "backends": [{"name": "b", "endpoints": [{"address": "127.0.0.1", "port": 1}]}],
            }
        )

    assert table_slots(config()) == MIN_SLOTS
    big = {"requests": 1, "maxKeys": 300_000}
    assert table_slots(config(big, {**big, "scope": "worker"})) == 1 << 20  # 600,000 -> 2^20
    assert table_slots(config(big, big)) == 1 << 21  # 1,200,000


def test_keys_up_to_max_keys_keep_their_buckets_and_memory_is_measured() -> None:
    """A flood of distinct keys as large as `maxKeys` in a table sized for it (half full at
    most): two choices of set leave (almost) no key without its bucket."""
    n = 1 << 15
    limit = RateLimit(requests=5, per_s=60.0, max_keys=n)
    table = SharedBucketTable.create(1 << 16, 2)  # what table_slots gives: 2 n
    store = SharedBucketStore(table, limit, rule_salt("r", 0, limit), worker=0)
    keys = [f"198.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)]
    sample = 5000
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for key in keys[:sample]:
        store.take(key, 1.0)
    cache = (tracemalloc.get_traced_memory()[0] - before) / sample
    tracemalloc.stop()
    for key in keys[sample:]:
        store.take(key, 1.0)
    kept = table.used(1.0)
    print(
        f"shared buckets: {kept} of {n} keys kept at {n / table.slots:.2f} load; "
        f"{table.stride * 8} bytes a slot shared, {cache:.0f} bytes a key in a worker's cache"
    )
    assert kept >= n - 3
    assert cache < 250


def test_bucket_store_follows_the_rule_s_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(bucket_store("scope", 0, RateLimit(requests=1)), BucketStore)  # alone
    table = SharedBucketTable.create(64, 2)
    monkeypatch.setattr(shared_buckets, "_attached", (table, 1))
    shared = bucket_store("scope", 1, RateLimit(requests=1))
    assert isinstance(shared, SharedBucketStore) and shared.table is table
    assert shared.mine == 4  # worker 1's count
    assert isinstance(bucket_store("scope", 2, RateLimit(requests=1, scope="worker")), BucketStore)


def test_a_table_refuses_what_is_not_one() -> None:
    import os

    fd = os.memfd_create("not-a-table")
    os.ftruncate(fd, 4096)
    with pytest.raises(ValueError, match="no shared rate limit table"):
        SharedBucketTable(fd)
    os.close(fd)
    with pytest.raises(ValueError, match="power of two"):
        SharedBucketTable.create(100, 2)
    with pytest.raises(ValueError, match="no count"):
        workers(2)[0].__class__(SharedBucketTable.create(8, 2), LIMIT, SALT, worker=2)


HAMMER = """
import sys, time
from gateway.config.resilience import RateLimit
from gateway.http.filters.shared_buckets import SharedBucketStore, SharedBucketTable, rule_salt
fd, worker, start, end = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
limit = RateLimit(requests=50, per_s=0.01)
store = SharedBucketStore(SharedBucketTable(fd), limit, rule_salt("r", 0, limit), worker=worker)
take, clock = store.take, time.monotonic
time.sleep(max(0.0, start - clock() - 0.005))
while clock() < start:
    pass
allowed = tries = 0
now = clock()
while now < end:
    tries += 1
    if not take("k", now):
        allowed += 1
    now = clock()
print(allowed, tries)
"""


def test_two_processes_hammering_one_key_lose_no_admission_and_keep_the_rate() -> None:
    """The race the module docstring reasons about, at full speed on two cores: both
    processes spin on one key (50 tokens, 5,000 a second), so every token is contested."""
    table = SharedBucketTable.create(64, 2)
    start = time.monotonic() + 1.0  # both interpreters are up by then
    end = start + 1.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, str(table.fd), str(i), str(start), str(end)],
            pass_fds=(table.fd,),
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env={"PORTWAY_PURE": "1", "PATH": "/usr/bin:/bin"},
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=30)[0].split() for p in procs]
    allowed = [int(out[0]) for out in outs]
    tries = sum(int(out[1]) for out in outs)
    expected = 50 + 5000 * (end - start)
    limit = RateLimit(requests=50, per_s=0.01)
    probe = SharedBucketStore(table, limit, rule_salt("r", 0, limit), worker=0)
    counted = table.count(table.locate(probe.tag("k"), 0.0, probe.interval_s))
    print(
        f"shared buckets, 2 processes on one key: {sum(allowed)} allowed of {tries} tries "
        f"({allowed}), limit {expected:.0f}: {sum(allowed) / expected - 1:+.2%}"
    )
    assert all(allowed)  # both took part
    assert counted == sum(allowed)  # every admission is in the counts
    # above: at most one token per other worker; below: tokens wasted while the machine
    # ran neither process for longer than the 10 ms bucket
    assert 0.9 * expected <= sum(allowed) <= expected + 1


def test_cost_per_request_is_measured() -> None:
    limit = RateLimit(requests=10**9, per_s=1.0)
    local = BucketStore(limit)
    shared = workers(2, limit, slots=1 << 16)[0]
    key = "198.51.100.23"
    n = 200_000
    costs = {}
    for name, take in (("worker", local.take), ("shared", shared.take)):
        take(key, 1.0)
        costs[name] = min(timeit.repeat(lambda t=take: t(key, 1.0), number=n, repeat=3)) / n
    first, other = workers(2, limit, slots=1 << 16)
    fresh = [f"10.{i >> 8 & 255}.{i & 255}.1" for i in range(20_000)]
    started = time.perf_counter()
    for new_key in fresh:  # new to the gateway: hashed, placed under the claim lock
        first.take(new_key, 1.0)
    placed = time.perf_counter()
    for new_key in fresh:  # new to this worker only: hashed and found
        other.take(new_key, 1.0)
    done = time.perf_counter()
    print(
        f"rate limit take(): worker {costs['worker'] * 1e9:.0f} ns, shared "
        f"{costs['shared'] * 1e9:.0f} ns; a key new to the gateway "
        f"{(placed - started) / len(fresh) * 1e9:.0f} ns, new to the worker only "
        f"{(done - placed) / len(fresh) * 1e9:.0f} ns"
    )
    assert costs["shared"] < 5e-6
