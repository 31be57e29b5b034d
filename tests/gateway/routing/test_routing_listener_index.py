"""Listeners' route indexes: a route serves the listeners it names, and listener "" shares
the index of a listener serving the same routes."""

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


def test_route_attaches_only_to_named_listeners() -> None:
    doc = _routes({**_route("r", "b0"), "listeners": ["admin"]})
    doc["listeners"] = [WEB, {"name": "admin", "protocol": "HTTP", "port": 8081}]
    t = table(doc)
    assert _winner(t, listener="admin") == "r"
    assert _winner(t, listener="web") is None
    assert t.route_http(facts(listener="web"), EndpointState()).error == "no_route"


def test_the_unnamed_listener_shares_the_index_of_a_listener_serving_the_same_routes() -> None:
    one = table(_routes(_route("a", "b0"), _route("b", "b1", ["x.example.com"])))
    assert one._http[""] is one._http["web"]  # one index of every route, not two
    assert _winner(one, listener="", host="x.example.com") == "b"
    doc = _routes({**_route("r", "b0"), "listeners": ["admin"]}, _route("s", "b1"))
    doc["listeners"] = [WEB, {"name": "admin", "protocol": "HTTP", "port": 8081}]
    two = table(doc)
    assert two._http[""] is not two._http["web"]  # "" serves r too, web does not
    assert _winner(two, listener="", url_path="/") in ("r", "s")


def test_a_listener_with_hostnames_serves_only_the_routes_whose_hostnames_intersect() -> None:
    doc = _routes(
        _route("api", "b0", ["api.example.com"]),
        _route("elsewhere", "b1", ["other.org"]),
        _route("any", "b2"),
    )
    doc["listeners"] = [{**WEB, "hostnames": ["*.example.com"]}]
    t = table(doc)
    assert _winner(t, host="api.example.com") == "api"
    assert _winner(t, host="x.example.com") == "any"  # takes the listener's hostnames
    assert _winner(t, host="other.org") is None
