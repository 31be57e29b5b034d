"""The registry contract's own helpers: `records_diff` is the inverse of folding with `apply`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from record_builders import rec

from portway.model import ServiceKey, ServiceRecord
from portway.registry.base import Change, ChangeKind, Snapshot, apply, records_diff


def test_records_diff_names_new_and_changed_records_and_none_for_keys_gone() -> None:
    a, b, c = rec("a"), rec("b"), rec("c")
    b2 = rec("b", node_port=30111)
    state = {a.key: a, b.key: b}
    assert records_diff(state, {a.key: rec("a"), b.key: b2, c.key: c}) == {b.key: b2, c.key: c}
    assert records_diff(state, {b.key: b}) == {a.key: None}
    assert records_diff(state, dict(state)) == {}


STATES = st.dictionaries(st.sampled_from("abcdef"), st.integers(30000, 30003), max_size=6).map(
    lambda ports: {r.key: r for r in (rec(c, p) for c, p in ports.items())}
)


@given(STATES, STATES)
def test_folding_the_diff_onto_the_old_state_gives_the_new_one(
    old: dict[ServiceKey, ServiceRecord], new: dict[ServiceKey, ServiceRecord]
) -> None:
    state = apply(old, Snapshot(old, 1))
    for key, record in records_diff(old, new).items():
        kind = ChangeKind.DELETE if record is None else ChangeKind.PUT
        state = apply(state, Change(kind, key, 2, record))
    assert state == new
