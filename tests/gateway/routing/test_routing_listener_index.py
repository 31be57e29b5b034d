"""Listeners' route indexes: a route serves the listeners it names, and listener "" shares
the index of a listener serving the same routes."""

from __future__ import annotations

from routing_builders import WEB, facts, route_doc, routes_doc, table, winner

from gateway.routing.endpoints import EndpointState


def test_route_attaches_only_to_named_listeners() -> None:
    doc = routes_doc({**route_doc("r", "b0"), "listeners": ["admin"]})
    doc["listeners"] = [WEB, {"name": "admin", "protocol": "HTTP", "port": 8081}]
    t = table(doc)
    assert winner(t, listener="admin") == "r"
    assert winner(t, listener="web") is None
    assert t.route_http(facts(listener="web"), EndpointState()).error == "no_route"


def test_the_unnamed_listener_shares_the_index_of_a_listener_serving_the_same_routes() -> None:
    one = table(routes_doc(route_doc("a", "b0"), route_doc("b", "b1", ["x.example.com"])))
    assert one.http_index("") is one.http_index("web")  # one index of every route, not two
    assert winner(one, listener="", host="x.example.com") == "b"
    doc = routes_doc({**route_doc("r", "b0"), "listeners": ["admin"]}, route_doc("s", "b1"))
    doc["listeners"] = [WEB, {"name": "admin", "protocol": "HTTP", "port": 8081}]
    two = table(doc)
    assert two.http_index("") is not two.http_index("web")  # "" serves r too, web does not
    assert winner(two, listener="", url_path="/") == "r"  # the first of two equal matches


def test_a_listener_with_hostnames_serves_only_the_routes_whose_hostnames_intersect() -> None:
    doc = routes_doc(
        route_doc("api", "b0", ["api.example.com"]),
        route_doc("elsewhere", "b1", ["other.org"]),
        route_doc("any", "b2"),
    )
    doc["listeners"] = [{**WEB, "hostnames": ["*.example.com"]}]
    t = table(doc)
    assert winner(t, host="api.example.com") == "api"
    assert winner(t, host="x.example.com") == "any"  # takes the listener's hostnames
    assert winner(t, host="other.org") is None
