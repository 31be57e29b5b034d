"""What the admin API reads of a request: its parameters, and the explain request."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from gateway.ops.admin_requests import BadRequest, check_query, flag, parse_explain_query


def test_the_explain_request_becomes_the_facts_a_router_reads() -> None:
    query = MultiDict(
        [
            ("request", "get https://Shop.Example/cart?id=7"),
            ("header", "X-Canary: always"),
            ("header", "cookie:a=1"),
            ("listener", "web"),
        ]
    )
    facts = parse_explain_query(query)
    assert (facts.method, facts.host, facts.path, facts.query) == (
        "GET",
        "shop.example",
        "/cart",
        "id=7",
    )
    assert facts.client_ip == "127.0.0.1"
    assert facts.listener == "web"
    assert facts.headers == {"host": "shop.example", "x-canary": "always", "cookie": "a=1"}


def test_a_url_without_a_path_asks_for_the_root() -> None:
    facts = parse_explain_query({"request": "HEAD http://shop.example", "from": "::1"})
    assert (facts.method, facts.path, facts.client_ip) == ("HEAD", "/", "::1")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", False), ("0", False), ("false", False), ("1", True), ("true", True)],
)
def test_a_flag_is_yes_or_no(value: str, expected: bool) -> None:
    assert flag({"undo": value}, "undo") is expected
    assert flag({}, "undo") is False


def test_parameters_of_paths_outside_the_admin_routes_are_left_to_their_owners() -> None:
    check_query("/dashboard/events", {"anything": "1"})
    with pytest.raises(BadRequest, match="unknown parameter 'limt'; did you mean 'limit'"):
        check_query("/endpoints", {"limt": "5"})
