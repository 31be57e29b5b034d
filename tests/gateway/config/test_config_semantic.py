"""Cross-reference checks: each rule reports at the key to change, errors vs warnings."""

from __future__ import annotations

import textwrap

import pytest

from gateway.config.hostnames import hostname_problem
from gateway.config.loader import check_config_text

BACKENDS = """
backends:
  - name: api
    endpoints: [{address: 10.0.0.1, port: 80, region: eu}]
"""


def issues(text: str, *, with_backends: bool = True) -> list[str]:
    body = textwrap.dedent(text).lstrip("\n")
    if with_backends:
        body += BACKENDS
    if "listeners:" not in body:
        body += "listeners: [{name: default, protocol: HTTP, port: 8080}]\n"
    report = check_config_text(body, "cfg.yaml")
    return [str(issue) for issue in report.issues]


def test_route_naming_an_unknown_listener_suggests_the_close_one() -> None:
    found = issues(
        """
        listeners:
          - {name: web, protocol: HTTP, port: 80}
        routes:
          - name: r
            listeners: [wbe]
            rules:
              - backendRefs: [{name: api}]
        """
    )
    assert found == [
        "cfg.yaml:5:17: routes[0].listeners[0]: no listener named 'wbe'; "
        "did you mean 'web'? (defined: web)"
    ]


def test_backend_ref_and_canary_naming_unknown_backends() -> None:
    found = issues(
        """
        listeners:
          - {name: web, protocol: HTTP, port: 80}
        routes:
          - name: r
            rules:
              - backendRefs:
                  - name: apj
                canary: {backend: nope, percent: 5}
        """
    )
    assert found == [
        "cfg.yaml:7:19: routes[0].rules[0].backendRefs[0].name: no backend named 'apj'; "
        "did you mean 'api'? (defined: api)",
        "cfg.yaml:8:27: routes[0].rules[0].canary.backend: no backend named 'nope' (defined: api)",
        "cfg.yaml:11:11: backends[0].name: warning: no route uses this backend",
    ]


def test_duplicate_names_point_at_the_second_and_cite_the_first() -> None:
    found = issues(
        """
        listeners:
          - {name: web, protocol: HTTP, port: 80}
          - {name: web, protocol: HTTP, port: 81}
        """
    )
    assert found == [
        "cfg.yaml:3:12: listeners[1].name: duplicate name 'web' (first used at line 2); "
        "names must be unique"
    ]


def test_backend_needs_exactly_one_of_service_or_endpoints() -> None:
    found = issues(
        """
        backends:
          - name: none
          - name: both
            service: {namespace: a, name: b, port: 80}
            endpoints: [{address: 10.0.0.1, port: 80}]
        """,
        with_backends=False,
    )
    assert found == [
        "cfg.yaml:2:5: backends[0]: a backend needs exactly one of `service` (registry) "
        "or `endpoints` (static)",
        "cfg.yaml:5:5: backends[1].endpoints: a backend has either `service` or `endpoints`, "
        "not both; split it into two backends",
    ]


def test_https_needs_tls_and_tcp_must_not_terminate() -> None:
    found = issues(
        """
        listeners:
          - {name: secure, protocol: HTTPS, port: 443}
          - name: raw
            protocol: TCP
            port: 5432
            tls: {certificates: [{certFile: c, keyFile: k}]}
        """
    )
    assert found == [
        "cfg.yaml:2:30: listeners[0].protocol: an HTTPS listener needs a `tls` block "
        "with certificates",
        "cfg.yaml:6:5: listeners[1].tls: `tls` termination is only for HTTPS listeners; "
        "TCP listeners forward bytes untouched",
        "cfg.yaml:6:37: listeners[1].tls.certificates[0].certFile: cannot read 'c': "
        "No such file or directory",
        "cfg.yaml:6:49: listeners[1].tls.certificates[0].keyFile: cannot read 'k': "
        "No such file or directory",
    ]


def test_two_listeners_on_one_socket_including_the_wildcard_address() -> None:
    found = issues(
        """
        listeners:
          - {name: a, protocol: HTTP, port: 80, address: 0.0.0.0}
          - {name: b, protocol: HTTP, port: 80, address: 10.1.1.1}
          - {name: c, protocol: HTTP, port: 81, address: 10.1.1.1}
          - {name: d, protocol: HTTP, port: 80, address: "::1"}
        """
    )
    assert found == [
        "cfg.yaml:3:37: listeners[1].port: 10.1.1.1:80 is already used by listener 'a' (line 2)"
    ]


def test_tcp_route_cannot_use_http_matches_filters_or_several_rules() -> None:
    found = issues(
        """
        listeners:
          - {name: db, protocol: TCP, port: 5432}
        routes:
          - name: r
            listeners: [db]
            rules:
              - backendRefs: [{name: api}]
                matches: [{path: {value: /x}}]
                filters: {preserveHost: false}
              - backendRefs: [{name: api}]
        """
    )
    assert found == [
        "cfg.yaml:6:5: routes[0].rules: a TCP/TLS route has exactly one rule (connections "
        "carry no HTTP to match); got 2",
        "cfg.yaml:8:19: routes[0].rules[0].matches[0]: TCP/TLS routes cannot match on path, "
        "headers, query or method",
        "cfg.yaml:9:9: routes[0].rules[0].filters: TCP/TLS routes cannot use HTTP filters",
    ]


def test_route_cannot_mix_layer4_and_http_listeners() -> None:
    found = issues(
        """
        listeners:
          - {name: web, protocol: HTTP, port: 80}
          - {name: db, protocol: TLS, port: 443}
        routes:
          - name: r
            listeners: [web, db]
            rules:
              - backendRefs: [{name: api}]
        """
    )
    assert found == [
        "cfg.yaml:6:16: routes[0].listeners: a route binds either HTTP/HTTPS listeners or "
        "TCP/TLS listeners, not both"
    ]


@pytest.mark.parametrize("policy", ["ring_hash", "maglev"])
def test_hashing_on_header_requires_its_name(policy: str) -> None:
    found = issues(
        f"""
        backends:
          - name: api
            endpoints: [{{address: 10.0.0.1, port: 80}}]
            loadBalancer:
              policy: {policy}
              hashOn: {{source: cookie}}
        """,
        with_backends=False,
    )
    assert found == [
        "cfg.yaml:6:15: backends[0].loadBalancer.hashOn: hashing on a cookie needs `name`: "
        "which cookie"
    ]


def test_canary_without_any_traffic_is_an_error() -> None:
    found = issues(
        """
        routes:
          - name: r
            rules:
              - backendRefs: [{name: api}]
                canary: {backend: api}
        """
    )
    assert "routes[0].rules[0].canary: this canary gets no traffic" in found[0]
    assert found[0].startswith("cfg.yaml:5:17:")
    assert found[1].endswith(
        "warning: the canary backend is also a regular backendRef of this rule"
    )


def test_canary_with_header_override_only_is_valid() -> None:
    found = issues(
        """
        routes:
          - name: r
            rules:
              - backendRefs: [{name: api}]
                canary: {backend: canary, header: {name: x-canary}}
        backends:
          - name: api
            endpoints: [{address: 10.0.0.1, port: 80}]
          - name: canary
            endpoints: [{address: 10.0.0.9, port: 80}]
        """,
        with_backends=False,
    )
    assert found == []


def test_allowed_regions_all_outside_is_error_some_outside_is_warning() -> None:
    found = issues(
        """
        routes:
          - name: r
            allowedRegions: [eu]
            rules:
              - backendRefs: [{name: us-only}, {name: mixed}]
        backends:
          - name: us-only
            endpoints: [{address: 10.0.0.2, port: 80, region: us}]
          - name: mixed
            endpoints:
              - {address: 10.0.0.3, port: 80, region: eu}
              - {address: 10.0.0.4, port: 80}
        """,
        with_backends=False,
    )
    assert found == [
        "cfg.yaml:5:30: routes[0].rules[0].backendRefs[0].name: every static endpoint of "
        "backend 'us-only' is outside this route's allowedRegions [eu] "
        "(10.0.0.2:80 in us); it could never be served",
        "cfg.yaml:5:47: routes[0].rules[0].backendRefs[1].name: warning: static endpoints "
        "of backend 'mixed' outside allowedRegions [eu] will never receive traffic from "
        "this route: 10.0.0.4:80 in no region",
    ]


def test_all_zero_weights_is_an_error() -> None:
    found = issues(
        """
        routes:
          - name: r
            rules:
              - backendRefs: [{name: api, weight: 0}]
        """
    )
    assert found == [
        "cfg.yaml:4:9: routes[0].rules[0].backendRefs: every backendRef has weight 0, so no "
        "request can be routed; give one a weight > 0"
    ]


def test_regexes_must_compile() -> None:
    found = issues(
        """
        routes:
          - name: r
            rules:
              - backendRefs: [{name: api}]
                matches:
                  - headers: [{name: x, value: "a(", type: RegularExpression}]
                  - path: {type: RegularExpression, value: "/ok/.*"}
        """
    )
    assert len(found) == 1
    assert found[0].startswith(
        "cfg.yaml:6:40: routes[0].rules[0].matches[0].headers[0].value: "
        "invalid regular expression 'a('"
    )


def test_redirect_and_rewrite_on_one_rule_is_an_error() -> None:
    found = issues(
        """
        routes:
          - name: r
            rules:
              - backendRefs: [{name: api}]
                filters:
                  urlRewrite: {hostname: other}
                  redirect: {scheme: https}
        """
    )
    assert found == [
        "cfg.yaml:7:11: routes[0].rules[0].filters.redirect: a rule either redirects or "
        "rewrites and forwards; remove `redirect` or `urlRewrite`"
    ]


def test_invalid_hostnames_are_reported_per_item() -> None:
    found = issues(
        """
        routes:
          - name: r
            hostnames: [ok.example.com, "*.example.com", "a.*.example.com"]
            rules:
              - backendRefs: [{name: api}]
        """
    )
    assert found == [
        "cfg.yaml:3:50: routes[0].hostnames[2]: 'a.*.example.com': '*' is allowed only "
        "as the leftmost label (*.example.com)"
    ]


@pytest.mark.parametrize(
    ("hostname", "valid"),
    [
        ("example.com", True),
        ("*.example.com", True),
        ("xn--bcher-kva.example", True),
        ("*", False),
        ("*.*.example.com", False),
        ("foo*.example.com", False),
        ("-bad.example.com", False),
        ("example.com:8080", False),
        ("10.0.0.1", False),
        ("", False),
        ("a" * 64 + ".com", False),
    ],
)
def test_hostname_rules(hostname: str, valid: bool) -> None:
    assert (hostname_problem(hostname) is None) is valid


def test_semantic_checks_wait_for_a_valid_shape() -> None:
    found = issues(
        """
        listeners:
          - {name: web, protocol: HTTP, port: 0}
        routes:
          - name: r
            listeners: [missing]
            rules:
              - backendRefs: [{name: missing}]
        """
    )
    assert found == ["cfg.yaml:2:39: listeners[0].port: 0 is out of range; allowed: 1 to 65535"]


def test_warnings_alone_leave_the_config_usable() -> None:
    report = check_config_text(textwrap.dedent(BACKENDS) + "routes: []\n", "cfg.yaml")
    assert report.ok and report.config is not None and report.warnings == ()
    text = BACKENDS + (
        "routes:\n  - name: r\n    rules:\n      - backendRefs: [{name: api}]\n"
        "        canary: {backend: api, percent: 5}\n"
    )
    report = check_config_text(text, "cfg.yaml")
    assert report.ok and len(report.warnings) == 2 and report.errors == ()
