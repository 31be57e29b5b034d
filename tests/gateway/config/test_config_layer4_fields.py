"""Fields a TCP/TLS route or listener would ignore are errors, not silent no-ops."""

from __future__ import annotations

import textwrap

import pytest

from gateway.config.loader import check_config_text

BASE = """\
version: 1
listeners:
  - {name: db, protocol: TCP, port: 5432}
  - {name: tls, protocol: TLS, port: 8443}
routes:
  - name: db
    listeners: [db]
    rules:
      - backendRefs: [{name: pg}]
EXTRA
backends:
  - name: pg
    endpoints: [{address: 127.0.0.1, port: 15432}]
  - name: pg2
    endpoints: [{address: 127.0.0.1, port: 15433}]
"""


def messages(extra: str, base: str = BASE) -> list[str]:
    text = base.replace("EXTRA\n", textwrap.indent(textwrap.dedent(extra), "        "))
    return [str(issue) for issue in check_config_text(text, "gw.yaml").issues if issue.is_error]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "retry: {attempts: 2}\n",
            "routes[0].rules[0].retry: `retry` is read only by HTTP routes",
        ),
        (
            "rateLimit: {requests: 10}\n",
            "routes[0].rules[0].rateLimit: `rateLimit` is read only by HTTP routes",
        ),
        (
            "timeouts: {request: 5s}\n",
            "routes[0].rules[0].timeouts: a TCP/TLS route reads `timeouts.connect` and "
            "`timeouts.idle` only",
        ),
        (
            "timeouts: {backendRequest: 1s}\n",
            "routes[0].rules[0].timeouts: a TCP/TLS route reads `timeouts.connect`",
        ),
        (
            "canary: {backend: pg2, percent: 10, sticky: true}\n",
            "routes[0].rules[0].canary: a TCP/TLS canary can split by percent only",
        ),
    ],
)
def test_http_only_rule_fields_on_a_tcp_route_are_errors(extra: str, expected: str) -> None:
    found = messages(extra)
    assert len(found) == 1 and expected in found[0], found


def test_what_a_tcp_route_reads_passes() -> None:
    assert (
        messages("timeouts: {connect: 1s, idle: 1m}\ncanary: {backend: pg2, percent: 10}\n") == []
    )


def test_auth_on_a_tcp_route_is_an_error() -> None:
    base = BASE.replace("    listeners: [db]\n", "    listeners: [db]\n    auth: {apiKey: {}}\n")
    found = messages("", base)
    assert any("routes[0].auth: `auth` is read only by HTTP routes" in line for line in found), (
        found
    )


def test_hostnames_on_a_tcp_listener_are_an_error() -> None:
    base = BASE.replace(
        "{name: db, protocol: TCP, port: 5432}",
        "{name: db, protocol: TCP, port: 5432, hostnames: [db.example.com]}",
    )
    assert messages("", base) == [
        "gw.yaml:3:43: listeners[0].hostnames: a TCP listener cannot tell hostnames apart "
        "(use protocol TLS to route on SNI)"
    ]
