"""TCP/TLS routing and the `portway routes` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from routing_builders import record, table

from gateway.routing.endpoints import EndpointState
from portway.cli import main

CONFIG = """\
version: 1
gateway: {region: us-east-1, zone: us-east-1a}
listeners:
  - {name: web, protocol: HTTP, port: 8080}
routes:
  - name: shop
    hostnames: [shop.example.com]
    rules:
      - matches: [{path: {type: PathPrefix, value: /api}}]
        backendRefs: [{name: api}]
backends:
  - name: api
    service: {namespace: shop, name: web, port: http}
"""


def _l4_doc() -> dict[str, object]:
    return {
        "listeners": [
            {"name": "tls", "protocol": "TLS", "port": 8443},
            {"name": "db", "protocol": "TCP", "port": 5432},
        ],
        "routes": [
            {
                "name": "a",
                "listeners": ["tls"],
                "hostnames": ["a.example.com"],
                "rules": [{"backendRefs": [{"name": "a"}]}],
            },
            {
                "name": "wild",
                "listeners": ["tls"],
                "hostnames": ["*.example.com"],
                "rules": [{"backendRefs": [{"name": "b"}]}],
            },
            {"name": "pg", "listeners": ["db"], "rules": [{"backendRefs": [{"name": "b"}]}]},
        ],
        "backends": [
            {"name": "a", "endpoints": [{"address": "127.0.0.1", "port": 9001}]},
            {"name": "b", "endpoints": [{"address": "127.0.0.1", "port": 9002}]},
        ],
    }


def test_tls_passthrough_routes_on_sni_and_tcp_takes_the_listeners_route() -> None:
    t = table(_l4_doc())
    state = EndpointState()
    assert t.route_tcp("tls", "a.example.com", "1.2.3.4", state).route.name == "a"  # type: ignore[union-attr]
    assert t.route_tcp("tls", "x.example.com", "1.2.3.4", state).route.name == "wild"  # type: ignore[union-attr]
    assert t.route_tcp("tls", "other.org", "1.2.3.4", state).error == "no_route"
    d = t.route_tcp("db", None, "1.2.3.4", state)
    assert d.route is not None and d.route.name == "pg" and d.endpoint is not None
    assert d.endpoint.port == 9002


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(CONFIG)
    reg = tmp_path / "registry"
    reg.mkdir()
    rec = record(
        "east", "us-east-1", [("n1", "10.0.0.1", "us-east-1a"), ("n2", "10.0.0.2", "us-east-1b")]
    )
    (reg / "east.json").write_text(json.dumps(rec.to_dict()))
    return cfg, reg


def test_routes_explain_prints_the_chain(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, reg = files
    code = main(
        [
            "routes",
            "explain",
            "--config",
            str(cfg),
            "--registry",
            str(reg),
            "GET http://shop.example.com/api/x?y=1",
            "--from",
            "203.0.113.7",
            "--seed",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "route shop" in out and "MATCHES" in out
    assert "level 0 (zone us-east-1a): 1/1 available" in out
    assert "=> route shop → backend api → east/10.0.0.1:30080" in out


def test_routes_explain_json_and_no_route(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, reg = files
    assert (
        main(
            [
                "routes",
                "explain",
                "--config",
                str(cfg),
                "--registry",
                str(reg),
                "GET http://shop.example.com/nope",
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"] == "no_route" and doc["endpoint"] is None and doc["steps"]


def test_routes_list(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    cfg, reg = files
    assert main(["routes", "list", "--config", str(cfg), "--registry", str(reg), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["key"] for e in doc["backends"]["api"]["endpoints"]] == [
        "east/10.0.0.1:30080",
        "east/10.0.0.2:30080",
    ]


def test_routes_reports_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nroutes: 3\n")
    assert main(["routes", "list", "--config", str(bad)]) == 1
    assert "bad.yaml" in capsys.readouterr().err
