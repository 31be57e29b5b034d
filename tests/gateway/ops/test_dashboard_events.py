"""Dashboard events from plain observations: reloads, table updates, rotation changes, the ring."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.ops.dashboard.events import (
    EventKind,
    EventRing,
    Happening,
    ReloadView,
    out_of_rotation,
    reload_happenings,
    rotation_happenings,
)
from gateway.ops.endpoint_view import merged_reasons

LOADED = ReloadView(
    version="0123456789abcdef",
    table_version=1,
    successes=1,
    failures=0,
    loaded_at=100.0,
    last_compile_ms=2.5,
)


def view(**changes: object) -> ReloadView:
    fields = {name: getattr(LOADED, name) for name in ReloadView.__slots__}
    return ReloadView(**{**fields, **changes})  # type: ignore[arg-type]


def test_the_first_look_reports_the_config_in_force_at_its_load_time() -> None:
    (loaded,) = reload_happenings(None, LOADED, now=130.0)
    assert loaded == Happening(100.0, EventKind.RELOAD, "config loaded", "0123456789ab")
    assert reload_happenings(None, view(version=None), now=130.0) == []


def test_nothing_changed_is_no_event() -> None:
    assert reload_happenings(LOADED, LOADED, now=130.0) == []


def test_a_reload_is_reported_once_with_its_new_version() -> None:
    after = view(version="fedcba9876543210", successes=2, table_version=2, loaded_at=120.0)
    assert reload_happenings(LOADED, after, now=130.0) == [
        Happening(120.0, EventKind.RELOAD, "config reloaded", "fedcba987654")
    ]
    many = view(successes=4, table_version=5)
    (event,) = reload_happenings(LOADED, many, now=130.0)
    assert event.text == "config reloaded (3 times)"


def test_a_rejected_config_names_its_first_issue_and_how_many_more() -> None:
    after = view(
        failures=1,
        rejected_at=125.0,
        rejected_issues=("gw.yaml:3:5: routes[0].name: bad", "gw.yaml:9:1: other"),
    )
    (event,) = reload_happenings(LOADED, after, now=130.0)
    assert event.kind is EventKind.REJECTED and event.at == 125.0
    assert event.text == (
        "config rejected, last good config kept: gw.yaml:3:5: routes[0].name: bad (+1 more)"
    )


def test_a_table_moved_without_a_reload_is_a_registry_update() -> None:
    after = view(table_version=4, last_compile_ms=0.75)
    (event,) = reload_happenings(LOADED, after, now=130.0)
    assert event == Happening(
        130.0,
        EventKind.TABLE,
        "routing table updated from the registry (3 updates, last compiled in 0.8 ms)",
        "table 4",
    )


def test_out_of_rotation_is_the_union_over_workers_with_reasons() -> None:
    reports = [
        {
            "endpoints": {
                "unhealthy": ["a/10.0.0.1:30080"],
                "ejected": [],
                "draining": [],
                "reasons": {"a/10.0.0.1:30080": "health check failed: timeout after 1s"},
            }
        },
        {
            "endpoints": {
                "unhealthy": [],
                "ejected": ["b/10.0.0.2:30080"],
                "draining": ["a/10.0.0.1:30080"],
            }
        },
        {},
    ]
    assert out_of_rotation(reports) == {
        "a/10.0.0.1:30080": "drained",
        "b/10.0.0.2:30080": "ejected",
    }
    assert out_of_rotation(reports[:1]) == {
        "a/10.0.0.1:30080": "health check failed: timeout after 1s"
    }


def test_out_of_rotation_gives_the_reason_endpoints_gives() -> None:
    """The dashboard and `/endpoints` merge the same reports the same way: one reason per key."""
    key = "a/10.0.0.1:30080"
    reports = [
        {"endpoints": {"unhealthy": [key]}},
        {"endpoints": {"ejected": [key], "reasons": {key: "ejected: 5 consecutive 5xx"}}},
    ]
    assert (
        out_of_rotation(reports) == merged_reasons(reports) == {key: "ejected: 5 consecutive 5xx"}
    )


def test_rotation_changes_name_each_endpoint_and_its_reason() -> None:
    before = {"a/1:1": "unhealthy", "a/2:1": "ejected: 5 consecutive 5xx"}
    after = {"a/2:1": "drained", "b/3:1": "health check failed: refused"}
    assert rotation_happenings(before, after, 7.0) == [
        Happening(7.0, EventKind.OUT_OF_ROTATION, "health check failed: refused", "b/3:1"),
        Happening(7.0, EventKind.OUT_OF_ROTATION, "drained", "a/2:1"),
        Happening(7.0, EventKind.BACK_IN_ROTATION, "back in rotation", "a/1:1"),
    ]


def test_a_cluster_lost_at_once_is_one_event_per_direction() -> None:
    down = {f"east/10.0.0.{i}:30080": "unhealthy" for i in range(30)}
    down["west/10.1.0.1:30080"] = "unhealthy"
    (lost,) = rotation_happenings({}, down, 1.0, fold_over=8)
    assert (lost.kind, lost.text, lost.subject) == (
        EventKind.OUT_OF_ROTATION,
        "31 endpoints out of rotation",
        "east: 30, west: 1",
    )
    (back,) = rotation_happenings(down, {}, 2.0, fold_over=8)
    assert (back.kind, back.text) == (EventKind.BACK_IN_ROTATION, "31 endpoints back in rotation")


def test_the_ring_keeps_the_last_events_numbered_in_order() -> None:
    ring = EventRing(capacity=3)
    for i in range(5):
        ring.add(Happening(float(i), EventKind.TABLE, f"update {i}"))
    assert [e.seq for e in ring.since(0)] == [3, 4, 5]
    assert [e.text for e in ring.since(4)] == ["update 4"]
    assert ring.last_seq == 5 and ring.since(5) == []
    assert ring.since(0)[0].to_json() == {
        "seq": 3,
        "at": 2.0,
        "kind": "table",
        "text": "update 2",
        "subject": "",
    }


keys = st.sets(st.sampled_from([f"c{i % 3}/10.0.0.{i}:1" for i in range(20)]))


@given(keys, keys)
def test_folding_bounds_the_events_of_one_tick(left: set[str], right: set[str]) -> None:
    before = dict.fromkeys(left, "unhealthy")
    after = dict.fromkeys(right, "ejected")
    events = rotation_happenings(before, after, 0.0, fold_over=4)
    assert len(events) <= 4 + 4 + 4
    named = {e.subject for e in events if e.subject in before.keys() | after.keys()}
    assert named <= before.keys() | after.keys()
