"""Route matching: hostname tiers and Gateway API precedence."""

from __future__ import annotations

from routing_builders import WEB, facts, static, table

from gateway.routing.endpoints import EndpointState


def _routes(*routes: dict[str, object]) -> dict[str, object]:
    return {
        "listeners": [WEB],
        "routes": list(routes),
        "backends": [static(f"b{i}", 9000 + i) for i in range(10)],
    }


def _route(
    name: str, backend: str, hostnames: list[str] | None = None, **match: object
) -> dict[str, object]:
    return {
        "name": name,
        "hostnames": hostnames or [],
        "rules": [{"matches": [match] if match else [{}], "backendRefs": [{"name": backend}]}],
    }


def _winner(t, **kw) -> str | None:  # type: ignore[no-untyped-def]
    d = t.route_http(facts(**kw), EndpointState())
    return d.route.name if d.route else None


def test_exact_path_beats_longer_prefix_and_regex() -> None:
    t = table(
        _routes(
            _route("prefix", "b0", path={"type": "PathPrefix", "value": "/api/v1/users"}),
            _route("regex", "b1", path={"type": "RegularExpression", "value": "/api/.*"}),
            _route("exact", "b2", path={"type": "Exact", "value": "/api/v1/users"}),
        )
    )
    assert _winner(t, url_path="/api/v1/users") == "exact"
    assert _winner(t, url_path="/api/v1/users/7") == "prefix"
    assert _winner(t, url_path="/api/v2") == "regex"


def test_longest_prefix_wins_and_prefix_matches_whole_segments_only() -> None:
    t = table(
        _routes(
            _route("short", "b0", path={"type": "PathPrefix", "value": "/api"}),
            _route("long", "b1", path={"type": "PathPrefix", "value": "/api/orders/"}),
        )
    )
    assert _winner(t, url_path="/api/orders/1") == "long"
    assert _winner(t, url_path="/api/orders") == "long"
    assert _winner(t, url_path="/api/ordersx") == "short"
    assert _winner(t, url_path="/apix") is None


def test_method_then_header_count_then_query_count_break_path_ties() -> None:
    p = {"type": "PathPrefix", "value": "/x"}
    t = table(
        _routes(
            _route("plain", "b0", path=p),
            _route("one-header", "b1", path=p, headers=[{"name": "X-A", "value": "1"}]),
            _route(
                "two-headers",
                "b2",
                path=p,
                headers=[{"name": "x-a", "value": "1"}, {"name": "x-b", "value": "2"}],
            ),
            _route("query", "b3", path=p, queryParams=[{"name": "q", "value": "1"}]),
            _route("post", "b4", path=p, method="POST"),
        )
    )
    assert _winner(t, url_path="/x", method="POST", headers={"x-a": "1", "x-b": "2"}) == "post"
    assert _winner(t, url_path="/x", headers={"x-a": "1", "x-b": "2"}) == "two-headers"
    assert _winner(t, url_path="/x", headers={"x-a": "1"}, query="q=1") == "one-header"
    assert _winner(t, url_path="/x", query="a=2&q=1") == "query"
    assert _winner(t, url_path="/x", query="q=2") == "plain"


def test_regex_header_match_uses_fullmatch() -> None:
    t = table(
        _routes(
            _route(
                "ua",
                "b0",
                headers=[{"name": "user-agent", "value": "curl/.*", "type": "RegularExpression"}],
            ),
        )
    )
    assert _winner(t, headers={"user-agent": "curl/8.1"}) == "ua"
    assert _winner(t, headers={"user-agent": "xcurl/8.1"}) is None


def test_config_order_breaks_full_ties() -> None:
    t = table(_routes(_route("first", "b0"), _route("second", "b1")))
    assert _winner(t) == "first"


def test_exact_host_then_longest_wildcard_then_no_hostnames() -> None:
    t = table(
        _routes(
            _route("any", "b0"),
            _route("wild", "b1", ["*.example.com"]),
            _route("wild-shop", "b2", ["*.shop.example.com"]),
            _route(
                "exact", "b3", ["api.shop.example.com"], path={"type": "PathPrefix", "value": "/v1"}
            ),
        )
    )
    assert _winner(t, host="api.shop.example.com", url_path="/v1/a") == "exact"
    assert _winner(t, host="api.shop.example.com", url_path="/other") == "wild-shop"
    assert _winner(t, host="a.b.example.com") == "wild"
    assert _winner(t, host="EXAMPLE.com") == "any"
    assert _winner(t, host="other.org") == "any"
