"""Failover across backends, panic open/closed, slow start, residency under failure."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from routing_builders import WEB, facts, record, table

from gateway.routing.endpoints import EndpointState
from gateway.routing.explain import explain_http

ON = record("onprem", "eu-west-1", [(f"o{i}", f"10.0.0.{i + 1}", "eu-west-1a") for i in range(2)])
CLOUD = record(
    "cloud",
    "eu-central-1",
    [(f"c{i}", f"10.1.0.{i + 1}", "eu-central-1a") for i in range(2)],
    service="cloud",
)
US = record(
    "us",
    "us-east-1",
    [(f"u{i}", f"10.2.0.{i + 1}", "us-east-1a") for i in range(2)],
    service="us",
)


def svc(name: str, service: str) -> dict[str, Any]:
    return {"name": name, "service": {"namespace": "shop", "name": service, "port": "http"}}


def doc(
    refs: list[tuple[str, int]], rule: dict[str, Any] | None = None, **route: Any
) -> dict[str, Any]:
    return {
        "gateway": {"region": "eu-west-1", "zone": "eu-west-1a"},
        "listeners": [WEB],
        "routes": [
            {
                "name": "r",
                "rules": [
                    {"backendRefs": [{"name": n, "weight": w} for n, w in refs], **(rule or {})}
                ],
                **route,
            }
        ],
        "backends": [svc("onprem", "web"), svc("cloud", "cloud"), svc("us", "us")],
    }


def spread(t: Any, state: EndpointState, n: int = 2000) -> Counter[str]:
    out: Counter[str] = Counter()
    for _ in range(n):
        d = t.route_http(facts(), state)
        out[d.endpoint.cluster if d.endpoint is not None else d.error] += 1
    return out


def test_a_backend_with_no_records_gives_its_share_to_the_others() -> None:
    """config/hybrid-residency.yaml without cloud records used to answer 503 for its share."""
    t = table(doc([("onprem", 13), ("cloud", 7)]), [ON])
    assert spread(t, EndpointState()) == Counter({"onprem": 2000})


def test_on_empty_fail_keeps_the_share_and_answers_503() -> None:
    t = table(doc([("onprem", 1), ("cloud", 1)], rule={"onEmpty": "fail"}), [ON])
    got = spread(t, EndpointState())
    assert set(got) == {"onprem", "no_healthy_upstream"}
    assert 800 < got["no_healthy_upstream"] < 1200


def test_a_backend_whose_endpoints_are_all_out_fails_over_in_proportion() -> None:
    t = table(doc([("onprem", 2), ("cloud", 1), ("us", 3)]), [ON, CLOUD, US])
    state = EndpointState()
    for e in t.backends["onprem"].endpoints:
        state.eject(e.key, 1e9)
    got = spread(t, state, 6000)
    assert "onprem" not in got
    assert 0.8 < got["us"] / got["cloud"] / 3 < 1.2  # cloud 1 : us 3, as their weights


def test_panic_open_spreads_over_dead_endpoints_and_closed_keeps_to_live_ones() -> None:
    four = record(
        "onprem", "eu-west-1", [(f"o{i}", f"10.0.0.{i + 1}", "eu-west-1a") for i in range(4)]
    )
    state = EndpointState()
    dead = {f"onprem/10.0.0.{i}:30080" for i in (1, 2, 3)}
    for key in dead:
        state.set_unhealthy(key, True)  # 25 % × 1.4 = 35 % health < 50 %: panic
    opened = table(doc([("onprem", 1)]), [four])
    picked = {opened.route_http(facts(), state).endpoint.key for _ in range(400)}  # type: ignore[union-attr]
    assert picked & dead
    closed = table(doc([("onprem", 1)], panic="closed"), [four])
    picked = {closed.route_http(facts(), state).endpoint.key for _ in range(400)}  # type: ignore[union-attr]
    assert picked == {"onprem/10.0.0.4:30080"}
    state.set_unhealthy("onprem/10.0.0.4:30080", True)
    assert closed.route_http(facts(), state).error == "no_healthy_upstream"


def test_a_returning_cluster_takes_its_traffic_back_gradually() -> None:
    both = record(
        "onprem",
        "eu-west-1",
        [("o0", "10.0.0.1", "eu-west-1a"), ("o1", "10.0.1.1", "eu-west-1b")],
    )
    d = doc([("onprem", 1)])
    d["backends"][0]["locality"] = {"slowStart": "2s"}
    t = table(d, [both])
    state = EndpointState()
    local = "onprem/10.0.0.1:30080"
    state.start_ramp(local, 100.0)
    shares = []
    for now in (100.0, 100.5, 101.0, 101.5, 102.0, 103.0):
        state.advance(now, now - 2.0)
        shares.append(t.backends["onprem"].plan(state, t.rng).load.shares[0])
    assert shares == sorted(shares) and shares[0] < 20.0 and shares[-1] == 100.0
    assert not state.returning  # forgotten once the ramp is over


@settings(max_examples=150, deadline=None)
@given(
    out=st.sets(st.integers(0, 5)),
    panic=st.sampled_from(["open", "closed"]),
    weights=st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 3)),
)
def test_residency_routes_never_leave_allowed_regions_whatever_fails(
    out: set[int], panic: str, weights: tuple[int, int, int]
) -> None:
    d = doc(
        [("onprem", weights[0]), ("cloud", weights[1]), ("us", weights[2])],
        panic=panic,
        allowedRegions=["eu-west-1", "eu-central-1"],
    )
    t = table(d, [ON, CLOUD, US])
    state = EndpointState()
    every = [e for b in t.backends.values() for e in b.endpoints]
    for i in out:
        if i < len(every):
            state.set_unhealthy(every[i].key, True)
    for _ in range(50):
        d2 = t.route_http(facts(), state)
        if d2.endpoint is not None:
            assert d2.endpoint.region in ("eu-west-1", "eu-central-1")


def test_explain_says_which_backends_and_levels_were_skipped_and_why() -> None:
    t = table(doc([("onprem", 1), ("cloud", 1)]), [ON, CLOUD])
    state = EndpointState()
    for e in t.backends["onprem"].endpoints:
        state.eject(e.key, 1e9)
    steps = []
    for _ in range(20):  # until the draw lands on the empty backend
        steps = explain_http(t, facts(), state).steps or []
        if any(s.startswith("failover:") for s in steps):
            break
    text = "\n".join(steps)
    assert "failover: backend onprem has no usable endpoint" in text
    assert "→ cloud" in text
    state2 = EndpointState()
    state2.set_unhealthy("onprem/10.0.0.1:30080", True)
    state2.set_unhealthy("onprem/10.0.0.2:30080", True)
    one = table(doc([("onprem", 1)]), [ON])
    text = "\n".join(explain_http(one, facts(), state2).steps or [])
    assert "onprem/10.0.0.1:30080 out: failed active health checks" in text


def test_a_returning_endpoint_ramps_up_inside_its_level() -> None:
    t = table(doc([("onprem", 1)]), [ON])
    state = EndpointState()
    back = "onprem/10.0.0.1:30080"
    state.start_ramp(back, 10.0)
    shares = []
    for now in (10.0, 11.0, 12.5):
        state.advance(now, now - 2.0)
        picks = Counter(t.route_http(facts(), state).endpoint.key for _ in range(4000))  # type: ignore[union-attr]
        shares.append(picks[back] / 4000)
    assert shares[0] < 0.32 < shares[1] < 0.45 < shares[2]
