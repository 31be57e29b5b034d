"""Route matching: hostname tiers and Gateway API precedence."""

from __future__ import annotations

from routing_builders import route_doc, routes_doc, table, winner


def test_exact_path_beats_longer_prefix_and_regex() -> None:
    t = table(
        routes_doc(
            route_doc("prefix", "b0", path={"type": "PathPrefix", "value": "/api/v1/users"}),
            route_doc("regex", "b1", path={"type": "RegularExpression", "value": "/api/.*"}),
            route_doc("exact", "b2", path={"type": "Exact", "value": "/api/v1/users"}),
        )
    )
    assert winner(t, url_path="/api/v1/users") == "exact"
    assert winner(t, url_path="/api/v1/users/7") == "prefix"
    assert winner(t, url_path="/api/v2") == "regex"


def test_longest_prefix_wins_and_prefix_matches_whole_segments_only() -> None:
    t = table(
        routes_doc(
            route_doc("short", "b0", path={"type": "PathPrefix", "value": "/api"}),
            route_doc("long", "b1", path={"type": "PathPrefix", "value": "/api/orders/"}),
        )
    )
    assert winner(t, url_path="/api/orders/1") == "long"
    assert winner(t, url_path="/api/orders") == "long"
    assert winner(t, url_path="/api/ordersx") == "short"
    assert winner(t, url_path="/apix") is None


def test_method_then_header_count_then_query_count_break_path_ties() -> None:
    p = {"type": "PathPrefix", "value": "/x"}
    t = table(
        routes_doc(
            route_doc("plain", "b0", path=p),
            route_doc("one-header", "b1", path=p, headers=[{"name": "X-A", "value": "1"}]),
            route_doc(
                "two-headers",
                "b2",
                path=p,
                headers=[{"name": "x-a", "value": "1"}, {"name": "x-b", "value": "2"}],
            ),
            route_doc("query", "b3", path=p, queryParams=[{"name": "q", "value": "1"}]),
            route_doc("post", "b4", path=p, method="POST"),
        )
    )
    assert winner(t, url_path="/x", method="POST", headers={"x-a": "1", "x-b": "2"}) == "post"
    assert winner(t, url_path="/x", headers={"x-a": "1", "x-b": "2"}) == "two-headers"
    assert winner(t, url_path="/x", headers={"x-a": "1"}, query="q=1") == "one-header"
    assert winner(t, url_path="/x", query="a=2&q=1") == "query"
    assert winner(t, url_path="/x", query="q=2") == "plain"


def test_regex_header_match_uses_fullmatch() -> None:
    t = table(
        routes_doc(
            route_doc(
                "ua",
                "b0",
                headers=[{"name": "user-agent", "value": "curl/.*", "type": "RegularExpression"}],
            ),
        )
    )
    assert winner(t, headers={"user-agent": "curl/8.1"}) == "ua"
    assert winner(t, headers={"user-agent": "xcurl/8.1"}) is None


def test_config_order_breaks_full_ties() -> None:
    t = table(routes_doc(route_doc("first", "b0"), route_doc("second", "b1")))
    assert winner(t) == "first"


def test_exact_host_then_longest_wildcard_then_no_hostnames() -> None:
    t = table(
        routes_doc(
            route_doc("any", "b0"),
            route_doc("wild", "b1", hostnames=["*.example.com"]),
            route_doc("wild-shop", "b2", hostnames=["*.shop.example.com"]),
            route_doc(
                "exact",
                "b3",
                hostnames=["api.shop.example.com"],
                path={"type": "PathPrefix", "value": "/v1"},
            ),
        )
    )
    assert winner(t, host="api.shop.example.com", url_path="/v1/a") == "exact"
    assert winner(t, host="api.shop.example.com", url_path="/other") == "wild-shop"
    assert winner(t, host="a.b.example.com") == "wild"
    assert winner(t, host="EXAMPLE.com") == "any"
    assert winner(t, host="other.org") == "any"
