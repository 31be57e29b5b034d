"""Backend choice: weights, canary overrides, percent and sticky cookies."""

from __future__ import annotations

from collections import Counter
from typing import Any

from routing_builders import WEB, facts, static, table

from gateway.routing.endpoints import EndpointState
from gateway.routing.explain import explain_http


def _doc(
    canary: dict[str, Any] | None = None, refs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    rule: dict[str, Any] = {"backendRefs": refs or [{"name": "stable"}]}
    if canary:
        rule["canary"] = canary
    return {
        "listeners": [WEB],
        "routes": [{"name": "r", "rules": [rule]}],
        "backends": [static("stable", 9001), static("canary", 9002), static("other", 9003)],
    }


def test_weights_split_traffic_in_proportion() -> None:
    t = table(_doc(refs=[{"name": "stable", "weight": 3}, {"name": "other", "weight": 1}]))
    state = EndpointState()
    seen = Counter(t.route_http(facts(), state).backend.name for _ in range(20000))  # type: ignore[union-attr]
    assert abs(seen["stable"] / 20000 - 0.75) < 0.02


def test_zero_weight_backend_gets_nothing() -> None:
    t = table(_doc(refs=[{"name": "stable", "weight": 1}, {"name": "other", "weight": 0}]))
    state = EndpointState()
    assert {t.route_http(facts(), state).backend.name for _ in range(500)} == {"stable"}  # type: ignore[union-attr]


def test_canary_header_override_forces_canary_even_at_zero_percent() -> None:
    t = table(
        _doc({"backend": "canary", "percent": 0, "header": {"name": "X-Canary", "value": "always"}})
    )
    state = EndpointState()
    assert t.route_http(facts(headers={"x-canary": "always"}), state).backend.name == "canary"  # type: ignore[union-attr]
    assert t.route_http(facts(headers={"x-canary": "no"}), state).backend.name == "stable"  # type: ignore[union-attr]


def test_canary_cookie_override_forces_canary() -> None:
    t = table(_doc({"backend": "canary", "percent": 0, "cookie": {"name": "beta", "value": "yes"}}))
    d = t.route_http(facts(headers={"cookie": "a=b; beta=yes"}), EndpointState())
    assert d.backend is not None and d.backend.name == "canary"


def test_canary_percent_takes_its_share() -> None:
    t = table(_doc({"backend": "canary", "percent": 10}))
    state = EndpointState()
    seen = Counter(t.route_http(facts(), state).backend.name for _ in range(20000))  # type: ignore[union-attr]
    assert abs(seen["canary"] / 20000 - 0.10) < 0.015


def test_sticky_canary_sets_cookie_once_and_honours_it() -> None:
    t = table(_doc({"backend": "canary", "percent": 50, "sticky": True, "stickyCookie": "side"}))
    state = EndpointState()
    first = t.route_http(facts(), state)
    assert first.set_cookie.startswith("side=")
    side = first.set_cookie.split(";")[0].split("=")[1]
    assert side == ("canary" if first.backend.name == "canary" else "stable")  # type: ignore[union-attr]
    for _ in range(50):
        again = t.route_http(facts(headers={"cookie": f"side={side}"}), state)
        assert again.set_cookie == ""
        assert (again.backend.name == "canary") == (side == "canary")  # type: ignore[union-attr]


def test_explain_says_why_the_canary_was_chosen() -> None:
    t = table(_doc({"backend": "canary", "header": {"name": "x-canary", "value": "always"}}))
    d = explain_http(t, facts(headers={"x-canary": "always"}), EndpointState())
    assert d.backend is not None and d.backend.name == "canary"
    assert any("canary forced by header x-canary" in s for s in d.steps or [])
