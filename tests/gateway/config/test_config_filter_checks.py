"""Filters in the config: redirect-only rules, prefix replacement, mirrors, CORS origins."""

from __future__ import annotations

import textwrap

from gateway.config.loader import check_config_text

TAIL = """
backends:
  - name: api
    endpoints: [{address: 10.0.0.1, port: 80}]
  - name: secure
    endpoints: [{address: 10.0.0.2, port: 443}]
    tls: true
listeners: [{name: web, protocol: HTTP, port: 8080}]
"""


def issues(text: str) -> list[str]:
    report = check_config_text(textwrap.dedent(text).lstrip("\n") + TAIL, "cfg.yaml")
    return [str(issue) for issue in report.errors]


def test_a_redirect_only_rule_needs_no_backend_refs() -> None:
    assert (
        issues(
            """
        routes:
          - name: r
            rules:
              - filters: {redirect: {scheme: https}}
              - backendRefs: [{name: api}]
        """
        )
        == []
    )


def test_a_rule_without_backend_refs_or_redirect_is_an_error_at_the_rule() -> None:
    assert issues(
        """
        routes:
          - name: r
            rules:
              - backendRefs: [{name: api}]
              - filters: {requestHeaders: {set: [{name: a, value: b}]}}
        """
    ) == [
        "cfg.yaml:5:9: routes[0].rules[1]: a rule without backendRefs must answer every "
        "request itself: add `filters.redirect` or a backendRef"
    ]


def test_replace_prefix_match_needs_path_prefix_matches() -> None:
    found = issues(
        """
        routes:
          - name: r
            rules:
              - matches: [{path: {type: Exact, value: /a}}]
                backendRefs: [{name: api}]
                filters: {urlRewrite: {replacePrefixMatch: /b}}
        """
    )
    assert len(found) == 1
    assert found[0].startswith(
        "cfg.yaml:6:32: routes[0].rules[0].filters.urlRewrite.replacePrefixMatch"
    )


def test_redirect_path_is_said_once() -> None:
    found = issues(
        """
        routes:
          - name: r
            rules:
              - filters: {redirect: {path: /a, replacePrefixMatch: /b}}
        """
    )
    assert found == [
        "cfg.yaml:4:19: routes[0].rules[0].filters.redirect: set one of `path`, "
        "`replacePrefixMatch`, not several"
    ]


def test_mirror_backends_must_exist_and_speak_plain_http() -> None:
    found = issues(
        """
        routes:
          - name: r
            rules:
              - backendRefs: [{name: api}]
                filters:
                  mirrors: [{backend: shadw}, {backend: secure, percent: 10}]
        """
    )
    assert len(found) == 2
    assert "filters.mirrors[0].backend: no backend named 'shadw'" in found[0]
    assert "filters.mirrors[1].backend: not supported yet: mirroring to a backend with" in found[1]


def test_cors_origins_are_checked() -> None:
    found = issues(
        """
        routes:
          - name: r
            rules:
              - backendRefs: [{name: api}]
                filters:
                  cors: {allowOrigins: ["https://*.example.com", "*", "example.com/x"]}
        """
    )
    assert len(found) == 1
    assert "filters.cors.allowOrigins[2]: an origin is `*` or scheme://host[:port]" in found[0]


def test_backend_ref_filters_are_http_only() -> None:
    text = """
    routes:
      - name: r
        listeners: [tcp]
        rules:
          - backendRefs: [{name: api, filters: {requestHeaders: {add: [{name: a, value: b}]}}}]
    """
    body = textwrap.dedent(text).lstrip("\n") + TAIL.replace(
        "listeners: [{name: web, protocol: HTTP, port: 8080}]",
        "listeners: [{name: tcp, protocol: TCP, port: 9000}]",
    )
    found = [str(i) for i in check_config_text(body, "cfg.yaml").issues]
    assert any("TCP/TLS routes cannot use HTTP filters" in f for f in found)
