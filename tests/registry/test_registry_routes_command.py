"""`portway routes` reads the registry the config names (files, etcd, consul) or says why not."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from portway.cli import build_parser, main
from portway.model import Node, ServicePort, ServiceRecord
from portway.registry.backends import open_registry

RECORD = ServiceRecord(
    cluster="east",
    namespace="shop",
    service="web",
    region="us-east",
    ports=(ServicePort("http", 80, 30080),),
    nodes=(Node("n1", "10.0.0.1", "us-east-1a"),),
)


def config(tmp_path: Path, registry: str) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(
        f"""\
version: 1
registry: {registry}
listeners: [{{name: web, protocol: HTTP, address: 127.0.0.1, port: 8080}}]
routes: [{{name: shop, rules: [{{backendRefs: [{{name: web}}]}}]}}]
backends: [{{name: web, service: {{namespace: shop, name: web, port: http}}}}]
"""
    )
    return path


async def publish(kind: str, endpoints: list[str], root: str) -> None:
    registry = open_registry(kind, endpoints=endpoints, root=root)
    try:
        await registry.publish(RECORD, ttl_s=30)
        await registry.abandon(RECORD.key)
    finally:
        await registry.close()


def test_routes_list_reads_the_etcd_registry_the_config_names(
    tmp_path: Path, etcd_endpoints: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    root = f"routes-{uuid.uuid4().hex[:6]}/"
    asyncio.run(publish("etcd", etcd_endpoints, root))
    urls = ", ".join(etcd_endpoints)
    cfg = config(
        tmp_path, f"{{type: etcd, endpoints: [{urls}], prefix: {root}portway/v1/services/}}"
    )
    assert main(["routes", "list", "--config", str(cfg)]) == 0
    captured = capsys.readouterr()
    assert "backend web: 1 endpoints" in captured.out
    assert "east/10.0.0.1:30080" in captured.out
    assert captured.err == f"portway routes: 1 records from the etcd registry at {urls}\n"


def test_routes_explain_reads_the_consul_registry_the_config_names(
    tmp_path: Path, consul_emulator_addr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = f"routes-{uuid.uuid4().hex[:6]}/"
    asyncio.run(publish("consul", [consul_emulator_addr], root))
    prefix = f"{root}portway/v1/services/"
    registry = f"{{type: consul, endpoints: ['{consul_emulator_addr}'], prefix: {prefix}}}"
    cfg = config(tmp_path, registry)
    assert main(["routes", "explain", "--config", str(cfg), "GET http://shop/"]) == 0
    assert "=> route shop → backend web → east/10.0.0.1:30080" in capsys.readouterr().out


def test_an_unreachable_registry_is_an_error_saying_which_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, "{type: consul, endpoints: ['127.0.0.1:9']}")
    assert main(["routes", "list", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "portway routes: cannot read the records from the consul registry at 127.0.0.1:9: "
        "consul at 127.0.0.1:9: Cannot connect to host 127.0.0.1:9"
    )
    assert "ConnectionKey" not in err and "Error(" not in err


def test_a_files_registry_that_does_not_exist_is_named_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config(tmp_path, "{type: files, path: recs}")
    assert main(["routes", "list", "--config", str(cfg)]) == 1
    assert not (tmp_path / "recs").exists()
    assert capsys.readouterr().err == (
        "portway routes: cannot read the records: registry directory 'recs' "
        "(registry.path in the config) does not exist\n"
    )


def test_files_records_are_read_with_bad_ones_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = tmp_path / "recs"
    reg.mkdir()
    (reg / "good.json").write_text(RECORD.to_json())
    (reg / "bad.json").write_text(RECORD.to_json().replace('"ready"', '"raedy"'))
    cfg = config(tmp_path, f"{{type: files, path: {reg}}}")
    assert main(["routes", "list", "--config", str(cfg)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"portway routes: bad record {reg / 'bad.json'} skipped: nodes[0].raedy: unknown key "
        "'raedy'; did you mean 'ready'? (allowed keys: name, address, zone, ready, "
        "localEndpoints)",
        f"portway routes: 1 records from the files registry '{reg}'",
    ]


@pytest.mark.parametrize(
    "request_text", ["FOO", "GET", "GET /path", "shop.example.com/", "GET http:///x", "GET a b"]
)
def test_a_request_that_is_not_method_url_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], request_text: str
) -> None:
    cfg = config(tmp_path, "{type: files, path: nowhere}")
    assert main(["routes", "explain", "--config", str(cfg), request_text]) == 2
    assert capsys.readouterr().err.startswith("portway routes: error: ")


def test_from_says_what_it_is_and_its_default() -> None:
    parser = build_parser()
    routes = parser._subparsers._group_actions[0].choices["routes"]  # type: ignore[union-attr]
    explain = routes._subparsers._group_actions[0].choices["explain"]  # type: ignore[union-attr]
    (action,) = [a for a in explain._actions if "--from" in a.option_strings]
    assert action.help and "client" in action.help and "default 198.51.100.1" in action.help
