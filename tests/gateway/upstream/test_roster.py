"""The endpoint roster: incremental, sliced following of tables, checked against counting anew."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.upstream.roster import EndpointRoster


@dataclass(frozen=True)
class Ep:
    key: str
    ready: bool = True

    @property
    def cluster(self) -> str:
        return "c" if self.key < "t" else "d"

    @property
    def port(self) -> int:
        return 30000 + len(self.key) % 2


@dataclass(frozen=True, eq=False)
class Backend:
    """A stand-in compiled backend: compared by identity, as the roster compares them."""

    endpoints: tuple[Ep, ...]


def backend(*keys: str, not_ready: tuple[str, ...] = ()) -> Backend:
    return Backend(tuple(Ep(k, k not in not_ready) for k in keys))


def counted(backends: dict[str, Backend]) -> dict[str, int]:
    return dict(Counter(e.key for b in backends.values() for e in b.endpoints))


def test_a_first_table_is_counted_in_slices_and_ramps_nothing() -> None:
    roster = EndpointRoster()
    table = {f"b{i}": backend(*(f"k{i}-{j}" for j in range(50))) for i in range(100)}
    roster.follow(table)
    slices = 0
    while roster.pending:
        step = roster.advance(500)
        assert len(step.added) <= 10 and not step.ramp and not step.gone
        slices += 1
    assert slices == 10
    assert roster.holders() == counted(table)


def test_a_change_walks_only_the_backends_that_are_new_objects() -> None:
    roster = EndpointRoster()
    table = {"a": backend("x", "y"), "b": backend("y", "z")}
    roster.follow(table)
    roster.advance()
    changed = {**table, "b": backend("y", "w", not_ready=("y",))}
    roster.follow(changed)
    step = roster.advance()
    assert [name for name, _ in step.added] == ["b"]
    assert step.ramp == ["w"] and step.gone == ["z"]  # y is still held by a
    roster.follow({**changed, "b": backend("y", "w")})
    assert roster.advance().ready_again == ["y"]


def test_a_backend_without_endpoints_before_does_not_ramp() -> None:
    roster = EndpointRoster()
    roster.follow({"a": backend()})
    roster.advance()
    roster.follow({"a": backend("x")})
    assert roster.advance().ramp == []


tables = st.lists(
    st.dictionaries(
        st.sampled_from("abcde"),
        st.lists(st.sampled_from("pqrstuvw"), max_size=5, unique=True),
        max_size=5,
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(tables=tables, budget=st.integers(1, 7), advances=st.lists(st.integers(0, 3), max_size=6))
def test_sliced_following_ends_where_counting_anew_does_and_never_drops_a_held_key(
    tables: list[dict[str, list[str]]], budget: int, advances: list[int]
) -> None:
    """Tables arrive while earlier plans are half done; a key both the previous and the
    new table hold is never reported gone, and the end state is the last table's count."""
    roster = EndpointRoster()
    known: set[str] = set()
    previous: dict[str, Backend] = {}
    for i, spec in enumerate(tables):
        # a name keeps its backend object when its keys did not change (shared, as incremental)
        table = {
            name: previous[name]
            if name in previous and [e.key for e in previous[name].endpoints] == keys
            else backend(*keys)
            for name, keys in spec.items()
        }
        held_by_both = set(counted(previous)) & set(counted(table))
        roster.follow(table)
        for _ in range(advances[i] if i < len(advances) else 0):
            step = roster.advance(budget)
            assert not set(step.gone) & held_by_both
            known |= {e.key for _, b in step.added for e in b.endpoints}
            known -= set(step.gone)
        previous = table
    while roster.pending:
        step = roster.advance(budget)
        assert not set(step.gone) & set(counted(previous))
        known |= {e.key for _, b in step.added for e in b.endpoints}
        known -= set(step.gone)
    assert roster.holders() == counted(previous)
    assert known == set(counted(previous))
    assert roster.backends == previous
