"""Compiled rules: prefixes, the plan hook, redirects as routing decisions, timeouts."""

from __future__ import annotations

from typing import Any

from routing_builders import WEB, config, facts, static, table

from gateway.routing.compiler import compile_table
from gateway.routing.endpoints import EndpointState


def _doc(
    filters: dict[str, Any], prefix: str = "/api", listener: dict[str, Any] = WEB
) -> dict[str, Any]:
    return {
        "listeners": [listener],
        "routes": [
            {
                "name": "r",
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                        "backendRefs": [{"name": "b"}],
                        "filters": filters,
                    }
                ],
            }
        ],
        "backends": [static("b", 9001)],
    }


def test_a_rule_carries_its_prefixes_longest_first_and_no_plan_without_a_planner() -> None:
    doc = _doc({})
    doc["routes"][0]["rules"][0]["matches"] = [
        {"path": {"type": "PathPrefix", "value": "/api/"}},
        {"path": {"type": "PathPrefix", "value": "/api/v2"}},
        {"path": {"type": "Exact", "value": "/x"}},
    ]
    d = table(doc).route_http(facts("/api/x"), EndpointState())
    assert d.rule is not None
    assert d.rule.prefixes == ("/api/v2", "/api")
    assert d.rule.plan is None


def test_the_planner_is_called_once_per_rule_at_compile() -> None:
    seen: list[str] = []

    def plan_rule(rule, route):  # type: ignore[no-untyped-def]
        seen.append(f"{route.name}:{rule.index}")
        return ("plan of", rule.name)

    t = compile_table(config(_doc({})), [], seed=1, plan_rule=plan_rule)
    d = t.route_http(facts("/api/x"), EndpointState())
    t.route_http(facts("/api/y"), EndpointState())
    assert seen == ["r:0"]
    assert d.rule is not None and d.rule.plan == ("plan of", "r/0")


def test_redirect_answers_with_location_and_status() -> None:
    t = table(_doc({"redirect": {"scheme": "https", "statusCode": 301}}))
    d = t.route_http(facts("/api/x", query="a=1"), EndpointState())
    assert d.error == "redirect" and d.endpoint is None
    assert d.redirect_status == 301
    assert d.redirect_location == "https://shop.example.com/api/x?a=1"


def test_redirect_with_host_port_and_path() -> None:
    t = table(_doc({"redirect": {"hostname": "new.example.com", "port": 8443, "path": "/moved"}}))
    d = t.route_http(facts("/api/x"), EndpointState())
    assert d.redirect_location == "http://new.example.com:8443/moved"
    assert d.redirect_status == 302


def test_a_redirect_only_rule_needs_no_backend() -> None:
    doc = _doc({"redirect": {"replacePrefixMatch": "/v2"}})
    del doc["routes"][0]["rules"][0]["backendRefs"]
    d = table(doc).route_http(facts("/api/x"), EndpointState())
    assert d.error == "redirect" and d.backend is None
    assert d.redirect_location == "http://shop.example.com/v2/x"


def test_timeouts_and_retry_come_through() -> None:
    doc = _doc({})
    doc["routes"][0]["rules"][0]["timeouts"] = {"request": "3s"}
    doc["routes"][0]["rules"][0]["retry"] = {"attempts": 4}
    d = table(doc).route_http(facts("/api/x"), EndpointState())
    assert d.rule is not None and d.rule.timeouts.request_s == 3.0
    assert d.rule.retry is not None and d.rule.retry.attempts == 4
