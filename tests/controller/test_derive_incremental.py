"""Incremental derivation: the cache notes which Services each change touches and
`rederive` derives only those, with the same result as deriving the whole cluster.

Hypothesis drives the cache with random sequences of watch items (objects added,
changed and deleted, relists, slices moving between Services, ServiceExports) and
derives now and then, as the controller's debounce would; after every derivation
the incremental result must equal a full `derive` of the cache's snapshot (apart
from the publishedAt of records that were not derived again).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from conftest import endpoint_slice, node, service
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.cache import ClusterCache
from controller.derive import Derivation, ServiceDerivation, derive
from controller.incremental import EVERYTHING, Touched, rederive
from controller.objects import ClusterSettings
from controller.watch import ENDPOINT_SLICES, NODES, SERVICE_EXPORTS, SERVICES, ObjectEvent, Reset

SETTINGS = ClusterSettings(cluster="c1", region="r1")
NODE_NAMES = ["n0", "n1", "n2", "n3"]
SERVICE_REFS = [(ns, name) for ns in ("a", "b") for name in ("s0", "s1")]


def normalized(d: Derivation) -> tuple[ServiceDerivation, ...]:
    """The derivation with every record's publishedAt at 0."""
    return tuple(
        dataclasses.replace(s, record=dataclasses.replace(s.record, published_at=0.0))
        if s.record is not None
        else s
        for s in d.services
    )


nodes = st.builds(
    lambda i, zone, ready, cordoned: node(
        NODE_NAMES[i], f"127.0.1.{i + 1}", zone=zone, ready=ready, unschedulable=cordoned
    ),
    st.integers(0, len(NODE_NAMES) - 1),
    st.sampled_from(["z1", "z2"]),
    st.booleans(),
    st.booleans(),
)
services = st.builds(
    lambda ref, kind, exported, local, node_port: service(
        ref[0],
        ref[1],
        type=kind,
        exported=exported,
        policy="Local" if local else "Cluster",
        node_port=node_port,
        health_check_node_port=32000 if local else None,
    ),
    st.sampled_from(SERVICE_REFS),
    st.sampled_from(["NodePort", "LoadBalancer", "ClusterIP"]),
    st.booleans(),
    st.booleans(),
    st.sampled_from([30080, 30081, 20000]),
)


def _slice(number: int, ref: tuple[str, str], pods: list[tuple[str, bool]]) -> dict[str, Any]:
    """Slice `slice-<number>` of namespace ref[0], labelled for Service ref[1]: the same
    slice may be relabelled to another Service."""
    obj = endpoint_slice(ref[0], ref[1], pods)
    obj["metadata"]["name"] = f"slice-{number}"
    return obj


slices = st.builds(
    _slice,
    st.integers(0, 2),
    st.sampled_from(SERVICE_REFS),
    st.lists(
        st.tuples(st.sampled_from([*NODE_NAMES, "gone"]), st.booleans()), min_size=1, max_size=3
    ),
)
exports = st.builds(
    lambda ref: {"metadata": {"namespace": ref[0], "name": ref[1]}},
    st.sampled_from(SERVICE_REFS),
)
OBJECTS = {SERVICES: services, NODES: nodes, ENDPOINT_SLICES: slices, SERVICE_EXPORTS: exports}

DERIVE = "derive"


def _events(kinds: dict[Any, Any]) -> list[st.SearchStrategy[Any]]:
    return [
        st.builds(ObjectEvent, st.just(kind), st.sampled_from(["ADDED", "MODIFIED", "DELETED"]), o)
        for kind, o in kinds.items()
    ]


# Node changes and relists touch (nearly) everything, so they are drawn less often than the
# per-Service changes whose bookkeeping is the point; derivations come often, as debounced.
events = st.one_of(
    st.just(DERIVE),
    st.just(DERIVE),
    *_events({k: o for k, o in OBJECTS.items() if k != NODES}),
    *_events({k: o for k, o in OBJECTS.items() if k != NODES}),
    *_events({NODES: nodes}),
    st.builds(Reset, st.sampled_from(list(OBJECTS)), st.just(()), st.just("1")),
    *(
        st.builds(Reset, st.just(kind), st.lists(objects, max_size=5).map(tuple), st.just("1"))
        for kind, objects in OBJECTS.items()
    ),
)


@settings(max_examples=800, deadline=None)
@given(
    st.tuples(*(st.lists(objects, max_size=4) for objects in OBJECTS.values())),
    st.lists(events, max_size=40),
)
def test_incremental_derivation_equals_a_full_one_after_any_changes(listed, steps) -> None:
    cache = ClusterCache()
    for kind, objects in zip(OBJECTS, listed, strict=True):
        cache.apply(Reset(kind, tuple(objects), "1"))
    previous: Derivation | None = None
    for now, step in enumerate([*steps, DERIVE], start=1):
        if step != DERIVE:
            cache.apply(step)
            continue
        touched = cache.take_touched()
        snap = cache.snapshot()
        got = rederive(
            previous, SETTINGS, snap.services, snap.nodes, snap.slices, touched, float(now)
        )
        full = derive(SETTINGS, snap.services, snap.nodes, snap.slices, float(now))
        assert normalized(got) == normalized(full), touched
        if previous is not None and not touched.everything:
            before = {(d.namespace, d.name): d for d in previous.services}
            for d in got.services:
                ref = (d.namespace, d.name)
                if ref not in touched.services and ref in before:
                    assert d is before[ref], f"{ref} derived again, untouched"
        previous = got


def _cluster() -> ClusterCache:
    cache = ClusterCache()
    cache.apply(Reset(NODES, (node("n0", "127.0.1.1"), node("n1", "127.0.1.2")), "1"))
    cache.apply(Reset(SERVICES, (service("a", "s0"), service("a", "s1", policy="Local")), "1"))
    cache.apply(Reset(ENDPOINT_SLICES, (endpoint_slice("a", "s1", [("n0", True)]),), "1"))
    cache.apply(Reset(SERVICE_EXPORTS, (), "1"))
    return cache


def test_a_slice_change_touches_its_service_and_a_node_change_every_one() -> None:
    cache = _cluster()
    assert cache.take_touched() == EVERYTHING, "the first derivation derives everything"
    assert not cache.take_touched(), "nothing changed since"
    cache.apply(ObjectEvent(ENDPOINT_SLICES, "MODIFIED", endpoint_slice("a", "s1", [])))
    assert cache.take_touched() == Touched(services=frozenset({("a", "s1")}))
    cache.apply(ObjectEvent(SERVICES, "DELETED", service("a", "s0")))
    cache.apply(
        ObjectEvent(SERVICE_EXPORTS, "ADDED", {"metadata": {"namespace": "a", "name": "x"}})
    )
    assert cache.take_touched() == Touched(services=frozenset({("a", "s0"), ("a", "x")}))
    cache.apply(ObjectEvent(NODES, "MODIFIED", node("n1", "127.0.1.2", ready=False)))
    assert cache.take_touched().everything
    cache.apply(ObjectEvent(NODES, "MODIFIED", node("n1", "127.0.1.2", ready=False)))
    assert not cache.take_touched(), "an unchanged object touches nothing"


def test_a_slice_relabelled_to_another_service_touches_both() -> None:
    cache = _cluster()
    cache.take_touched()
    moved = endpoint_slice("a", "s0", [("n1", True)])
    moved["metadata"]["name"] = "s1-a"  # the slice s1 had, now labelled for s0
    cache.apply(ObjectEvent(ENDPOINT_SLICES, "MODIFIED", moved))
    assert cache.take_touched() == Touched(services=frozenset({("a", "s0"), ("a", "s1")}))


def test_a_relist_touches_only_what_it_changed() -> None:
    cache = _cluster()
    cache.take_touched()
    cache.apply(Reset(SERVICES, (service("a", "s0"), service("a", "s1", node_port=30090)), "2"))
    assert cache.take_touched() == Touched(services=frozenset({("a", "s1")}))
    cache.apply(Reset(NODES, (node("n0", "127.0.1.1"),), "2"))
    assert cache.take_touched().everything
