"""The Lease election rules as plain values, with an injected clock.

`LeaseStore` is the apiserver's part in miniature: a Lease with a
resourceVersion and the 409 on a stale write. Hypothesis drives two (or
three) candidates through arbitrary interleavings of reads, writes, clock
steps and crashes, and checks that two of them never count themselves leader
at the same instant.
"""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.leader import ElectionSettings, LeaderElection, LeaseRecord, micro_time

WALL = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)


def settings(identity: str) -> ElectionSettings:
    return ElectionSettings(
        identity=identity, lease_duration_s=15, renew_deadline_s=10, retry_period_s=2
    )


class LeaseStore:
    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0

    def write(self, record: LeaseRecord) -> LeaseRecord | None:
        current = self.record.resource_version if self.record else ""
        if record.resource_version != current:
            return None  # 409 Conflict (or AlreadyExists for a create)
        self.version += 1
        self.record = LeaseRecord(
            record.holder,
            record.duration_s,
            record.acquire_time,
            record.renew_time,
            record.transitions,
            str(self.version),
        )
        return self.record


def step(election: LeaderElection, store: LeaseStore, now: float) -> None:
    election.observe(store.record, now)
    claim = election.claim(now, WALL + datetime.timedelta(seconds=now))
    if claim is not None:
        written = store.write(claim)
        if written is not None:
            election.written(written, now)


def test_first_candidate_creates_the_lease_and_leads():
    store, a = LeaseStore(), LeaderElection(settings("a"))
    step(a, store, 0.0)
    assert a.is_leader(0.0)
    assert store.record is not None and store.record.holder == "a"
    assert store.record.acquire_time == store.record.renew_time == micro_time(WALL)
    assert store.record.duration_s == 15


def test_a_renewing_holder_keeps_the_lease():
    store, a, b = LeaseStore(), LeaderElection(settings("a")), LeaderElection(settings("b"))
    for t in range(0, 60, 2):
        step(a, store, float(t))
        step(b, store, float(t) + 1)
    assert a.is_leader(60.0) and not b.is_leader(60.0)
    assert store.record is not None and store.record.transitions == 0


def test_a_silent_holder_is_replaced_after_the_lease_duration_on_the_observers_clock():
    store, a, b = LeaseStore(), LeaderElection(settings("a")), LeaderElection(settings("b"))
    step(a, store, 0.0)
    step(b, store, 100.0)  # b first sees a's record at 100: it counts from there
    step(b, store, 114.0)
    assert store.record is not None and store.record.holder == "a"
    step(b, store, 115.0)
    assert store.record.holder == "b" and store.record.transitions == 1
    assert b.is_leader(115.0)
    assert not a.is_leader(115.0), "a stopped counting itself leader at its renew deadline"


def test_the_holder_steps_down_at_the_renew_deadline_without_renewals():
    store, a = LeaseStore(), LeaderElection(settings("a"))
    step(a, store, 0.0)
    assert a.is_leader(9.9) and not a.is_leader(10.0)


def test_a_stale_write_loses_the_race():
    store, a, b = LeaseStore(), LeaderElection(settings("a")), LeaderElection(settings("b"))
    a.observe(store.record, 0.0)
    b.observe(store.record, 0.0)
    claim_a, claim_b = a.claim(0.0, WALL), b.claim(0.0, WALL)
    assert claim_a is not None and claim_b is not None
    assert store.write(claim_a) is not None
    assert store.write(claim_b) is None, "both read the same (absent) version; one wins"


def test_release_hands_the_lease_over_at_once():
    store, a, b = LeaseStore(), LeaderElection(settings("a")), LeaderElection(settings("b"))
    step(a, store, 0.0)
    step(b, store, 1.0)
    release = a.release()
    assert release is not None and release.holder == ""
    assert store.write(release) is not None
    step(b, store, 2.0)
    assert b.is_leader(2.0) and store.record is not None and store.record.holder == "b"
    assert LeaderElection(settings("c")).release() is None, "a non-holder releases nothing"


@pytest.mark.parametrize(
    ("retry", "renew", "duration"), [(2, 10, 10), (0, 10, 15), (10, 10, 15), (2, 16, 15)]
)
def test_inconsistent_timings_are_refused(retry, renew, duration):
    with pytest.raises(ValueError, match="retry_period_s < renew_deadline_s"):
        ElectionSettings(
            identity="a",
            lease_duration_s=duration,
            renew_deadline_s=renew,
            retry_period_s=retry,
        )


actions = st.lists(
    st.one_of(
        st.tuples(st.just("step"), st.integers(0, 2)),
        st.tuples(st.just("crash"), st.integers(0, 2)),
        st.tuples(st.just("release"), st.integers(0, 2)),
        st.tuples(st.just("wait"), st.floats(0.0, 20.0)),
    ),
    max_size=80,
)


@given(actions)
def test_never_two_leaders_at_once(plan):
    store = LeaseStore()
    candidates = [LeaderElection(settings(name)) for name in "abc"]
    now = 0.0
    for action, arg in plan:
        if action == "wait":
            now += arg
        elif action == "crash":
            candidates[arg] = LeaderElection(settings("abc"[arg]))  # restarts knowing nothing
        elif action == "release":
            record = candidates[arg].release()
            written = store.write(record) if record is not None else None
            if written is not None:
                candidates[arg].written(written, now)
        else:
            step(candidates[arg], store, now)
        leaders = [c for c in candidates if c.is_leader(now)]
        assert len(leaders) <= 1, [c.settings.identity for c in leaders]
        if leaders:
            assert store.record is not None
            assert store.record.holder == leaders[0].settings.identity
