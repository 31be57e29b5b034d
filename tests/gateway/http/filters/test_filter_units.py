"""Each built-in filter with plain values: no sockets, no event loop (mirror's send aside)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import TypeAdapter

from gateway.config.model import Cors, GatewayConfig, HeaderModifier, RequestRedirect, UrlRewrite
from gateway.http.exchange import Exchange
from gateway.http.filters.cors import CorsFilter
from gateway.http.filters.header_modifier import HeaderEdits
from gateway.http.filters.mirror import MirrorFilter, MirrorLimit, copy_of
from gateway.http.filters.redirect import RedirectFilter, request_port
from gateway.http.filters.rewrite import PathRewrite, path_rewrite
from gateway.http.plan import RulePlan, compile_http_table
from gateway.routing.facts import RequestFacts
from gateway.routing.redirect import replace_prefix


def exchange(
    method: bytes = b"GET",
    path: bytes = b"/api/x",
    query: bytes = b"",
    host: bytes = b"shop.example.com",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Exchange:
    ex = Exchange(method, path, query, "1.1", host, headers or [], b"", None)
    # the request parser captures Origin as the head arrives (`RequestReader.on_header`)
    ex.origin = next((v for n, v in ex.headers if n.lower() == b"origin"), b"")
    return ex


def facts_of(ex: Exchange) -> RequestFacts:
    host = ex.host.decode().partition(":")[0]
    return RequestFacts(ex.method.decode(), host, ex.path.decode(), ex.query.decode())


def modifier(**kw: Any) -> HeaderModifier:
    return TypeAdapter(HeaderModifier).validate_python(kw)


# --- header modifier ---------------------------------------------------------


def test_header_modifier_sets_adds_and_removes_case_insensitively() -> None:
    edits = HeaderEdits.of(
        modifier(
            set=[{"name": "X-Env", "value": "prod"}],
            add=[{"name": "X-Tag", "value": "a"}],
            remove=["x-debug"],
        )
    )
    got = edits.apply([(b"x-env", b"dev"), (b"X-Debug", b"1"), (b"X-Tag", b"z"), (b"A", b"b")])
    assert got == [(b"X-Tag", b"z"), (b"A", b"b"), (b"x-env", b"prod"), (b"x-tag", b"a")]
    assert edits.lines == b"x-env: prod\r\nx-tag: a\r\n"
    assert edits.drop == frozenset({b"x-env", b"x-debug"})


def test_backend_modifier_applies_after_the_rule_and_wins_on_the_same_name() -> None:
    rule = HeaderEdits.of(modifier(set=[{"name": "X-Env", "value": "prod"}]))
    backend = HeaderEdits.of(
        modifier(set=[{"name": "x-env", "value": "canary"}], add=[{"name": "X-B", "value": "1"}])
    )
    both = rule.then(backend)
    assert both.lines == b"x-env: canary\r\nx-b: 1\r\n"
    removed = rule.then(HeaderEdits.of(modifier(remove=["X-ENV"])))
    assert removed.lines == b"" and b"x-env" in removed.drop


def test_no_modifier_is_no_edit() -> None:
    edits = HeaderEdits.of(None)
    assert not edits.drop and not edits.lines and edits.then(edits) is edits


# --- URL rewrite ---------------------------------------------------------------


def test_rewrite_replaces_the_longest_matching_prefix_element_wise() -> None:
    rw = path_rewrite(UrlRewrite(replace_prefix_match="/v2"), ("/api/v1", "/api"))
    assert rw is not None
    assert rw.path("/api/x") == "/v2/x"
    assert rw.path("/api/v1/x") == "/v2/x"
    assert rw.path("/api") == "/v2"
    assert rw.path("/apix") == "/apix"
    root = path_rewrite(UrlRewrite(replace_prefix_match="/"), ("/api",))
    assert root is not None and root.path("/api/x") == "/x" and root.path("/api") == "/"


def test_rewrite_full_path_and_none() -> None:
    rw = path_rewrite(UrlRewrite(replace_full_path="/index"), ("/api",))
    assert rw is not None and rw.path("/api/anything") == "/index"
    assert path_rewrite(UrlRewrite(hostname="internal"), ("/api",)) is None
    assert path_rewrite(None, ()) is None


# --- redirect ------------------------------------------------------------------


def _redirect(**kw: Any) -> RedirectFilter:
    return RedirectFilter(TypeAdapter(RequestRedirect).validate_python(kw), ("/api",))


def _location(f: RedirectFilter, ex: Exchange, scheme: bytes = b"http") -> tuple[int, str]:
    ex.scheme = scheme
    answer = f.on_request(ex, facts_of(ex), 0.0)
    assert answer.headers[0][0] == b"Location" and answer.body == b""
    return answer.status, answer.headers[0][1].decode()


def test_redirect_to_https_drops_the_port_the_client_used() -> None:
    f = _redirect(scheme="https", statusCode=301)
    ex = exchange(host=b"shop.example.com:8080", query=b"a=1")
    assert _location(f, ex) == (301, "https://shop.example.com/api/x?a=1")


def test_redirect_without_scheme_keeps_the_clients_port_unless_default() -> None:
    assert _location(_redirect(), exchange(host=b"h:8080")) == (302, "http://h:8080/api/x")
    assert _location(_redirect(), exchange(host=b"h:80")) == (302, "http://h/api/x")
    assert _location(_redirect(), exchange(host=b"h:443"), b"https") == (302, "https://h/api/x")


def test_redirect_hostname_port_and_paths() -> None:
    f = _redirect(hostname="new.example.com", port=8443, replaceFullPath="/moved")
    assert _location(f, exchange())[1] == "http://new.example.com:8443/moved"
    f = _redirect(replacePrefixMatch="/v2", statusCode=308)
    assert _location(f, exchange(path=b"/api/a/b")) == (308, "http://shop.example.com/v2/a/b")
    f = _redirect(path="/", port=443, scheme="https")
    assert _location(f, exchange())[1] == "https://shop.example.com/"


def test_redirect_of_an_ipv6_host_is_bracketed() -> None:
    ex = exchange(host=b"[::1]:8080")
    ex.scheme = b"http"
    answer = _redirect().on_request(ex, RequestFacts("GET", "::1", "/p"), 0.0)
    assert answer.headers[0][1] == b"http://[::1]:8080/p"


def test_request_port_reads_host_headers() -> None:
    assert request_port(b"h") is None
    assert request_port(b"h:81") == 81
    assert request_port(b"[::1]") is None
    assert request_port(b"[::1]:9") == 9


# --- CORS ------------------------------------------------------------------------


def _cors(**kw: Any) -> CorsFilter:
    return CorsFilter(TypeAdapter(Cors).validate_python(kw))


def test_cors_origins_exact_wildcard_and_any() -> None:
    f = _cors(allowOrigins=["https://app.example.com", "https://*.example.org"])
    assert f.allows(b"https://app.example.com")
    assert f.allows(b"HTTPS://APP.EXAMPLE.COM")
    assert f.allows(b"https://a.b.example.org")
    assert not f.allows(b"https://example.org")
    assert not f.allows(b"http://a.example.org")
    assert not f.allows(b"https://evil.com")
    assert _cors(allowOrigins=["*"]).allows(b"https://anything")


def test_cors_preflight_is_answered_with_the_policy() -> None:
    f = _cors(
        allowOrigins=["https://app.example.com"],
        allowMethods=["GET", "PUT"],
        allowHeaders=["X-Token"],
        allowCredentials=True,
        maxAge=600,
    )
    ex = exchange(
        b"OPTIONS",
        headers=[
            (b"Origin", b"https://app.example.com"),
            (b"Access-Control-Request-Method", b"PUT"),
        ],
    )
    answer = f.on_request(ex, facts_of(ex), 0.0)
    assert answer is not None and answer.status == 200
    assert dict(answer.headers) == {
        b"Access-Control-Allow-Origin": b"https://app.example.com",
        b"Vary": b"Origin",
        b"Access-Control-Allow-Credentials": b"true",
        b"Access-Control-Allow-Methods": b"GET, PUT",
        b"Access-Control-Allow-Headers": b"X-Token",
        b"Access-Control-Max-Age": b"600",
    }


def test_cors_preflight_from_an_origin_not_allowed_gets_no_cors_headers() -> None:
    f = _cors(allowOrigins=["https://app.example.com"])
    ex = exchange(
        b"OPTIONS",
        headers=[(b"origin", b"https://evil.com"), (b"access-control-request-method", b"GET")],
    )
    answer = f.on_request(ex, facts_of(ex), 0.0)
    assert answer is not None and answer.headers == ()


def test_cors_wildcards_echo_the_request_with_credentials() -> None:
    f = _cors(allowOrigins=["*"], allowMethods=["*"], allowHeaders=["*"], allowCredentials=True)
    ex = exchange(
        b"OPTIONS",
        headers=[
            (b"Origin", b"https://a.io"),
            (b"Access-Control-Request-Method", b"DELETE"),
            (b"Access-Control-Request-Headers", b"x-a, x-b"),
        ],
    )
    answer = f.on_request(ex, facts_of(ex), 0.0)
    assert answer is not None
    headers = dict(answer.headers)
    assert headers[b"Access-Control-Allow-Origin"] == b"https://a.io"
    assert headers[b"Access-Control-Allow-Methods"] == b"DELETE"
    assert headers[b"Access-Control-Allow-Headers"] == b"x-a, x-b"
    plain = _cors(allowOrigins=["*"], allowMethods=["*"])
    answer = plain.on_request(ex, facts_of(ex), 0.0)
    assert answer is not None
    assert dict(answer.headers)[b"Access-Control-Allow-Origin"] == b"*"
    assert dict(answer.headers)[b"Access-Control-Allow-Methods"] == b"*"


def test_cors_actual_request_gets_response_headers_and_goes_on() -> None:
    f = _cors(allowOrigins=["https://app.example.com"], exposeHeaders=["X-Total"])
    ex = exchange(headers=[(b"Origin", b"https://app.example.com")])
    assert f.on_request(ex, facts_of(ex), 0.0) is None
    assert ex.response_lines == (
        b"Access-Control-Allow-Origin: https://app.example.com\r\nVary: Origin\r\n"
        b"Access-Control-Expose-Headers: X-Total\r\n"
    )
    other = exchange(headers=[(b"Origin", b"https://evil.com")])
    assert f.on_request(other, facts_of(other), 0.0) is None and other.response_lines == b""
    none = exchange()
    assert f.on_request(none, facts_of(none), 0.0) is None and none.response_lines == b""


# --- mirror --------------------------------------------------------------------


def test_a_copy_is_the_forwarded_request_with_connection_close() -> None:
    ex = exchange(b"POST")
    ex.line = b"POST /v2/x HTTP/1.1\r\n"
    ex.head = b"X-Request-Id: 1\r\nContent-Length: 4\r\n\r\n"
    ex.body = [b"da", b"ta"]
    assert copy_of(ex, b"shadow:80") == (
        b"POST /v2/x HTTP/1.1\r\nHost: shadow:80\r\nX-Request-Id: 1\r\nContent-Length: 4\r\n"
        b"Connection: close\r\n\r\ndata"
    )
    ex.chunked = True
    assert copy_of(ex, b"h").endswith(b"close\r\n\r\n2\r\nda\r\n2\r\nta\r\n0\r\n\r\n")


def test_mirror_percent_skips_and_limits_without_touching_the_request() -> None:
    table = compile_http_table(_mirror_config(), [], seed=1)
    limit = MirrorLimit(limit=0)
    f = MirrorFilter("shadow", 100.0, timeout_s=1.0, rng=random.Random(1), limit=limit)
    ex = exchange()
    ex.table = table
    f.on_forward(ex, facts_of(ex), None)  # type: ignore[arg-type]  # dropped before ctx is read
    assert limit.dropped == 1 and limit.in_flight == 0
    streaming = exchange(b"POST")
    streaming.table = table
    streaming.body_done = False
    f.on_forward(streaming, facts_of(streaming), None)  # type: ignore[arg-type]
    assert limit.skipped == 1
    never = MirrorFilter("shadow", 0.0, timeout_s=1.0, rng=random.Random(1), limit=limit)
    for _ in range(100):
        never.on_forward(ex, facts_of(ex), None)  # type: ignore[arg-type]
    assert limit.dropped == 1 and limit.skipped == 1


def _mirror_config() -> GatewayConfig:
    return TypeAdapter(GatewayConfig).validate_python(
        {
            "listeners": [{"name": "web", "protocol": "HTTP", "port": 8080}],
            "backends": [
                {"name": "app", "endpoints": [{"address": "127.0.0.1", "port": 9001}]},
                {"name": "shadow", "endpoints": [{"address": "127.0.0.1", "port": 9002}]},
            ],
            "routes": [
                {
                    "name": "r",
                    "rules": [
                        {
                            "backendRefs": [
                                {"name": "app"},
                                {
                                    "name": "shadow",
                                    "weight": 0,
                                    "filters": {
                                        "requestHeaders": {"add": [{"name": "X-B", "value": "1"}]}
                                    },
                                },
                            ],
                            "filters": {
                                "mirrors": [{"backend": "shadow", "percent": 50}],
                                "cors": {"allowOrigins": ["*"]},
                                "redirect": None,
                                "requestHeaders": {"set": [{"name": "X-R", "value": "r"}]},
                            },
                        }
                    ],
                }
            ],
        }
    )


# --- the plan ------------------------------------------------------------------


def test_the_plan_is_built_once_per_rule_in_stage_order() -> None:
    table = compile_http_table(_mirror_config(), [], seed=1)
    rule = table.routes[0].rules[0]
    plan = rule.plan
    assert isinstance(plan, RulePlan)
    assert [type(f).__name__ for f in plan.request_filters] == ["CorsFilter"]
    assert [type(f).__name__ for f in plan.forward_filters] == ["MirrorFilter"]
    assert plan.request_lines == b"x-r: r\r\n"
    assert plan.for_backend("app") is plan
    shadow = plan.for_backend("shadow")
    assert shadow.request_lines == b"x-r: r\r\nx-b: 1\r\n"
    assert shadow.forward_filters == plan.forward_filters


def test_a_rule_without_filters_has_an_empty_chain() -> None:
    config = _mirror_config()
    plain = TypeAdapter(GatewayConfig).validate_python(
        {
            "listeners": [{"name": "web", "protocol": "HTTP", "port": 8080}],
            "backends": [{"name": "app", "endpoints": [{"address": "127.0.0.1", "port": 9}]}],
            "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "app"}]}]}],
        }
    )
    assert config is not None
    plan = compile_http_table(plain, [], seed=1).routes[0].rules[0].plan
    assert isinstance(plan, RulePlan)
    assert plan.request_filters == () and plan.forward_filters == () and plan.backend_plans == ()
    assert plan.request_lines == b"" and plan.path_rewrite is None


@pytest.mark.parametrize(
    ("prefixes", "replacement", "path"),
    [
        (("/api",), "/v2", "/api/x"),
        (("/api",), "/", "/api/x"),
        (("/api",), "/v2/", "/api"),
        (("/api/v1", "/api"), "/new", "/api/v1/items"),
        (("/api",), "/v2", "/apix"),
        (("",), "/v2", "/anything"),
        (("/api",), "/", "/api"),
    ],
)
def test_prefix_rewrite_on_bytes_matches_the_text_rule(
    prefixes: tuple[str, ...], replacement: str, path: str
) -> None:
    rewrite = PathRewrite(None, replacement, prefixes)
    assert rewrite.target(path.encode()) == replace_prefix(path, prefixes, replacement).encode()
    assert PathRewrite("/fixed", None, prefixes).target(path.encode()) == b"/fixed"
