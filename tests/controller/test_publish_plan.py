"""The publisher's diff (pure) and its behaviour on an in-memory registry."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from controller.metrics import ControllerMetrics
from controller.publish import Publisher, controller_owner, plan, same_content
from portway.model import Node, ServiceKey, ServicePort, ServiceRecord
from portway.registry.memory import MemoryRegistry, MemoryStore


def rec(service: str, node_port: int = 30080, nodes: int = 1, at: float = 0.0) -> ServiceRecord:
    return ServiceRecord(
        "c1",
        "shop",
        service,
        ports=(ServicePort("http", 80, node_port),),
        nodes=tuple(Node(f"n{i}", f"127.0.1.{i + 1}") for i in range(nodes)),
        published_at=at,
    )


def test_rederiving_an_unchanged_service_writes_nothing():
    published = {rec("web").key: rec("web", at=1.0)}
    assert not plan({rec("web").key: rec("web", at=2.0)}, published)
    assert same_content(rec("web", at=1.0), rec("web", at=2.0))


def test_changes_are_put_and_missing_keys_withdrawn():
    published = {rec(s).key: rec(s) for s in ("a", "b", "c")}
    desired = {rec("a").key: rec("a"), rec("b").key: rec("b", nodes=2), rec("d").key: rec("d")}
    todo = plan(desired, published)
    assert [r.service for r in todo.puts] == ["b", "d"]
    assert todo.withdrawals == (rec("c").key,)


records = st.builds(
    rec,
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.integers(30000, 30005),
    st.integers(0, 3),
    st.floats(0, 10),
)
states = st.lists(records).map(lambda rs: {r.key: r for r in rs})


@given(states, states)
def test_applying_the_plan_reaches_the_desired_state(published, desired):
    todo = plan(desired, published)
    after = {k: v for k, v in published.items() if k not in todo.withdrawals}
    after.update({r.key: r for r in todo.puts})
    assert after.keys() == desired.keys()
    assert all(same_content(after[k], desired[k]) for k in desired)
    untouched = [r for r in todo.puts if r.key in published and same_content(r, published[r.key])]
    assert untouched == [], "nothing identical is rewritten"


async def test_publisher_writes_only_when_active_and_abandons_on_deactivate():
    store = MemoryStore()
    publisher = Publisher(MemoryRegistry(store), ControllerMetrics("c1"), ttl_s=60)
    await publisher.set_desired({rec("web").key: rec("web")})
    assert store.snapshot().records == {}, "a follower writes nothing"
    await publisher.activate()
    assert set(store.snapshot().records) == {ServiceKey("shop", "web", "c1")}
    revision = store.revision
    await publisher.set_desired({rec("web").key: dataclasses.replace(rec("web"), published_at=9)})
    assert store.revision == revision, "same content, no write"
    await publisher.deactivate(abandon=True)
    assert set(store.snapshot().records) == {ServiceKey("shop", "web", "c1")}, "TTL decides"
    assert publisher.published == {}


async def test_a_key_held_by_another_writer_is_blocked_until_freed():
    store = MemoryStore()
    other = MemoryRegistry(store)
    await other.publish(rec("web"), 60)
    publisher = Publisher(MemoryRegistry(store), ControllerMetrics("c1"), ttl_s=60)
    await publisher.set_desired({rec("web").key: rec("web", nodes=2)})
    await publisher.activate()
    assert publisher.blocked.keys() == {rec("web").key} and publisher.pending()
    await other.withdraw(rec("web").key)
    await publisher.sync()
    assert publisher.blocked == {}
    assert len(store.snapshot().records[rec("web").key].nodes) == 2


async def test_a_new_term_takes_back_every_record_an_earlier_term_held():
    """Held before losing the Lease, adopted by the other replica meanwhile and left to its
    TTL when that one stopped: the next activation writes (adopts) every record again."""
    store = MemoryStore()
    mine = MemoryRegistry(store, owner=controller_owner("c1"))
    other = MemoryRegistry(store, owner=controller_owner("c1"))
    publisher = Publisher(mine, ControllerMetrics("c1"), ttl_s=60)
    await publisher.set_desired({rec("web").key: rec("web"), rec("db").key: rec("db")})
    await publisher.activate()
    await publisher.deactivate(abandon=False)
    await other.publish(rec("web"), 60)
    await other.abandon(rec("web").key)
    assert store.holds(rec("web").key.path(), other.session)
    await publisher.set_desired({rec("web").key: rec("web")})  # db deleted meanwhile
    await publisher.activate()
    assert store.holds(rec("web").key.path(), mine.session)
    assert set(store.snapshot().records) == {rec("web").key}, "db withdrawn"
    assert publisher.blocked == {}
