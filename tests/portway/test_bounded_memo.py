"""BoundedMemo: remembers until a put would pass its bound, then starts afresh."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from portway.bounded_memo import BoundedMemo


def test_counting_entries_it_keeps_limit_of_them_and_the_next_one_starts_afresh() -> None:
    memo: BoundedMemo[str, int] = BoundedMemo(3)
    for i, key in enumerate("abc"):
        assert memo.put(key, i) == i
    assert [memo.get(k) for k in "abc"] == [0, 1, 2] and len(memo) == 3
    memo.put("d", 3)
    assert list(memo) == ["d"] and memo.get("a") is None and memo.held == 1


def test_counting_bytes_a_put_that_would_pass_the_bound_clears_first() -> None:
    memo: BoundedMemo[bytes, str] = BoundedMemo(10)
    memo.put(b"abcd", "x", cost=4)
    memo.put(b"efghij", "y", cost=6)
    assert len(memo) == 2 and memo.held == 10
    memo.put(b"k", "z", cost=1)
    assert list(memo) == [b"k"] and memo.held == 1


PUTS = st.lists(st.tuples(st.integers(0, 20), st.integers(1, 8)), max_size=60)


@given(st.integers(1, 30), PUTS)
def test_it_behaves_as_a_dict_cleared_whenever_a_put_would_pass_the_bound(
    limit: int, puts: list[tuple[int, int]]
) -> None:
    memo: BoundedMemo[int, int] = BoundedMemo(limit)
    model: dict[int, int] = {}
    held = 0
    for n, (key, cost) in enumerate(puts):
        if held + cost > limit:
            model.clear()
            held = 0
        model[key] = n
        held += cost
        memo.put(key, n, cost)
        assert memo.held == held
        assert held <= max(limit, cost)
    assert dict((k, memo.get(k)) for k in memo) == model
    assert all(memo.get(k) is None for k in range(21) if k not in model)
