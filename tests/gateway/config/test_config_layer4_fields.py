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
            "routes[0].rules[0].canary.sticky: a TCP/TLS canary cannot be sticky",
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


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        (
            "loadBalancer: {policy: round_robin, ringSize: 4096}",
            "backends[0].loadBalancer.ringSize: `ringSize` is read only by ring_hash, not "
            "round_robin; remove it or change `policy`",
        ),
        (
            "loadBalancer: {policy: ring_hash, choiceCount: 4}",
            "backends[0].loadBalancer.choiceCount: `choiceCount` is read only by least_request",
        ),
        (
            "loadBalancer: {maglevTableSize: 1009}",
            "backends[0].loadBalancer.maglevTableSize: `maglevTableSize` is read only by maglev",
        ),
        (
            "loadBalancer: {policy: random, hashOn: {source: client_ip}}",
            "backends[0].loadBalancer.hashOn: `hashOn` is read only by maglev and ring_hash",
        ),
        (
            "locality: {prefer: region, priorities: [{zones: [a]}]}",
            "backends[0].locality.prefer: `prefer` is not read when `priorities` are given",
        ),
    ],
)
def test_balancer_and_locality_fields_the_policy_does_not_read_are_errors(
    backend: str, expected: str
) -> None:
    text = BASE.replace(
        "    endpoints: [{address: 127.0.0.1, port: 15432}]\n",
        f"    endpoints: [{{address: 127.0.0.1, port: 15432}}]\n    {backend}\n",
    )
    found = messages("", text)
    assert len(found) == 1 and expected in found[0], found


def test_a_field_read_by_the_chosen_policy_passes() -> None:
    text = BASE.replace(
        "    endpoints: [{address: 127.0.0.1, port: 15432}]\n",
        "    endpoints: [{address: 127.0.0.1, port: 15432}]\n"
        "    loadBalancer: {policy: ring_hash, ringSize: 4096, hashOn: {source: client_ip}}\n",
    )
    assert messages("", text) == []
