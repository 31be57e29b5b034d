"""Rule filters the proxy applies: path rewrite, redirect, header edits."""

from __future__ import annotations

from typing import Any

from routing_builders import WEB, facts, static, table

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


def _rule(filters: dict[str, Any], prefix: str = "/api"):  # type: ignore[no-untyped-def]
    d = table(_doc(filters, prefix)).route_http(facts("/api/x"), EndpointState())
    assert d.rule is not None
    return d.rule


def test_rewrite_path_is_identity_without_url_rewrite() -> None:
    assert _rule({}).rewrite_path("/api/x?y") == "/api/x?y"


def test_replace_prefix_match_keeps_the_rest_element_wise() -> None:
    rule = _rule({"urlRewrite": {"replacePrefixMatch": "/v2"}})
    assert rule.rewrite_path("/api/x") == "/v2/x"
    assert rule.rewrite_path("/api") == "/v2"
    root = _rule({"urlRewrite": {"replacePrefixMatch": "/"}})
    assert root.rewrite_path("/api/x") == "/x"
    assert root.rewrite_path("/api") == "/"


def test_replace_full_path_and_hostname_rewrite() -> None:
    rule = _rule({"urlRewrite": {"replaceFullPath": "/index", "hostname": "internal.svc"}})
    assert rule.rewrite_path("/api/anything") == "/index"
    assert rule.host_rewrite == "internal.svc"


def test_header_edits_are_lowercased_bytes() -> None:
    rule = _rule(
        {
            "requestHeaders": {"set": [{"name": "X-Env", "value": "prod"}], "remove": ["X-Debug"]},
            "responseHeaders": {"add": [{"name": "Via", "value": "portway"}]},
            "preserveHost": False,
        }
    )
    assert rule.request_set == ((b"x-env", b"prod"),)
    assert rule.request_remove == frozenset({b"x-debug"})
    assert rule.response_add == ((b"via", b"portway"),)
    assert rule.preserve_host is False


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


def test_timeouts_and_retry_come_through() -> None:
    doc = _doc({})
    doc["routes"][0]["rules"][0]["timeouts"] = {"request": "3s"}
    doc["routes"][0]["rules"][0]["retry"] = {"attempts": 4}
    d = table(doc).route_http(facts("/api/x"), EndpointState())
    assert d.rule is not None and d.rule.timeouts.request_s == 3.0
    assert d.rule.retry is not None and d.rule.retry.attempts == 4
