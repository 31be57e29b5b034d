"""NetworkPolicies that select a Service's pods, read from manifests, judged for outside traffic."""

from __future__ import annotations

from typing import Any

import pytest

from controller.kube_objects import label_selector, network_policy_info
from controller.network_policy import PolicyEffect, assess, overall

PODS = [{"app": "web", "tier": "front"}, {"app": "web", "tier": "back"}]


def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": "shop", "name": name}, "spec": spec}


@pytest.mark.parametrize(
    ("selector", "selects"),
    [
        ({}, True),
        ({"matchLabels": {"app": "web"}}, True),
        ({"matchLabels": {"app": "db"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["back"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]}, True),
        ({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, True),
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["mid"]}],
            },
            False,
        ),
    ],
)
def test_pod_selector(selector: dict[str, Any], selects: bool) -> None:
    sel = label_selector(selector)
    assert any(sel.matches(p) for p in PODS) is selects


def test_deny_all_ingress_fails_outside_traffic() -> None:
    (f,) = assess([network_policy_info(policy("deny", {"podSelector": {}}))], PODS)
    assert f.effect is PolicyEffect.DENIES_ALL
    assert f.policy == "shop/deny"


def test_pod_only_peers_block_nodeport_traffic() -> None:
    p = policy(
        "pods-only",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}],
        },
    )
    (f,) = assess([network_policy_info(p)], PODS)
    assert f.effect is PolicyEffect.BLOCKS_EXTERNAL


def test_ip_block_allows_listed_cidrs_only() -> None:
    p = policy(
        "cidr",
        {
            "podSelector": {},
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}}]}],
        },
    )
    (f,) = assess([network_policy_info(p)], PODS)
    assert f.effect is PolicyEffect.ALLOWS_CIDRS
    assert "10.0.0.0/8 except 10.9.0.0/16" in f.detail


def test_open_rule_allows_and_policies_add_up() -> None:
    open_rule = policy(
        "open",
        {"podSelector": {}, "ingress": [{"ports": [{"port": 8080, "protocol": "TCP"}]}]},
    )
    deny = policy("deny", {"podSelector": {}})
    findings = assess([network_policy_info(deny), network_policy_info(open_rule)], PODS)
    assert [f.effect for f in findings] == [PolicyEffect.DENIES_ALL, PolicyEffect.ALLOWS_ANY_SOURCE]
    assert overall(findings) is PolicyEffect.ALLOWS_ANY_SOURCE
    assert "8080/TCP" in findings[1].detail


def test_egress_only_and_unselecting_policies_are_ignored() -> None:
    egress = policy("egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    elsewhere = policy("db", {"podSelector": {"matchLabels": {"app": "db"}}})
    assert assess([network_policy_info(egress), network_policy_info(elsewhere)], PODS) == ()
    assert overall(()) is None
