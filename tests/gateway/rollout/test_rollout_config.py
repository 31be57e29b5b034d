"""`portway check` on rollout blocks: what the runtime could not honour is an error at its key."""

from __future__ import annotations

from gateway.config.loader import check_config_text

BASE = """\
version: 1
listeners:
  - {{name: web, protocol: HTTP, port: 8080}}
routes:
  - name: shop
    rules:
      - name: {name}
        backendRefs: {refs}
        canary: {{backend: api-v2, {canary}}}
backends:
  - name: api
    service: {{namespace: shop, name: api, port: http, clusters: [eu-a]}}
  - name: api-v2
    service: {{namespace: shop, name: api, port: http, clusters: [eu-b]}}
"""


def issues(canary: str, *, name: str = "api", refs: str = "[{name: api}]") -> list[str]:
    text = BASE.format(canary=canary, name=name, refs=refs)
    return [str(issue) for issue in check_config_text(text, "gw.yaml").issues]


def test_a_cross_cluster_rollout_is_accepted() -> None:
    rollout = (
        "rollout: {steps: [{percent: 5, pause: 1m}, {percent: 50, pause: 5m}], "
        "maxErrorRate: 0.5, maxP99: 300ms, minRequests: 100, rollbackOnFailure: false}"
    )
    assert issues(rollout) == []


def test_a_fixed_percent_beside_a_rollout_is_an_error() -> None:
    assert issues("percent: 10, rollout: {steps: [{percent: 50}]}") == [
        "gw.yaml:9:44: routes[0].rules[0].canary.percent: the rollout sets the canary's share "
        "step by step; remove `percent`"
    ]


def test_steps_only_grow_from_above_zero() -> None:
    found = issues("rollout: {steps: [{percent: 0}, {percent: 50}, {percent: 20}]}")
    assert [line.split(": ", 2)[1:] for line in found] == [
        [
            "routes[0].rules[0].canary.rollout.steps[0].percent",
            "a first step of 0% sends the canary nothing",
        ],
        [
            "routes[0].rules[0].canary.rollout.steps[2].percent",
            "steps only grow: 20% comes after 50%",
        ],
    ]


def test_a_rollout_needs_a_stable_side_and_a_key_safe_rule_name() -> None:
    assert any(
        "a rollout moves traffic from the rule's backendRefs" in line
        for line in issues("rollout: {steps: [{percent: 50}]}", refs="[]")
    )
    found = issues("rollout: {steps: [{percent: 50}]}", name='"api v2"')
    assert [line.split(": ")[1] for line in found] == ["routes[0].rules[0].name"]


def test_a_rollout_on_a_tcp_route_is_not_supported_yet() -> None:
    text = """\
version: 1
listeners:
  - {name: db, protocol: TCP, port: 5432}
routes:
  - name: pg
    listeners: [db]
    rules:
      - backendRefs: [{name: pg-a}]
        canary: {backend: pg-b, rollout: {steps: [{percent: 50}]}}
backends:
  - name: pg-a
    endpoints: [{address: 127.0.0.1, port: 6000}]
  - name: pg-b
    endpoints: [{address: 127.0.0.1, port: 6001}]
"""
    found = [str(issue) for issue in check_config_text(text, "gw.yaml").issues]
    assert [line.split(": ", 2)[1] for line in found] == ["routes[0].rules[0].canary.rollout"]
    assert "not supported yet on TCP/TLS routes" in found[0]
