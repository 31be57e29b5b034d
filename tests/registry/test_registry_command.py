"""`portway registry` against a files directory and the session's etcd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portway.cli import main
from portway.registry.files import read_records

RECORD = """
cluster: onprem
namespace: shop
service: web
region: eu
ports: [{name: http, port: 80, nodePort: 30080}]
nodes:
  - {name: rack1, address: 192.0.2.10, zone: dc1}
"""


def test_put_ls_get_on_a_files_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "onprem.yaml"
    src.write_text(RECORD)
    reg = tmp_path / "reg"
    assert main(["registry", "--dir", str(reg), "put", str(src)]) == 0
    assert [r.cluster for r in read_records(reg)] == ["onprem"]
    assert main(["registry", "--dir", str(reg), "put", str(src)]) == 0  # static: replaceable
    capsys.readouterr()
    assert main(["registry", "--dir", str(reg), "--json", "ls"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["nodes"][0]["address"] for r in listed] == ["192.0.2.10"]
    assert main(["registry", "--dir", str(reg), "get", "shop/web/onprem"]) == 0
    assert json.loads(capsys.readouterr().out)["region"] == "eu"
    assert main(["registry", "--dir", str(reg), "get", "shop/web/nowhere"]) == 1


def test_put_with_a_ttl_on_etcd_is_visible_to_ls(
    tmp_path: Path, etcd_endpoints: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "onprem.yaml"
    src.write_text(RECORD)
    common = ["registry", "--backend", "etcd", "--endpoints", ",".join(etcd_endpoints)]
    common += ["--root", "cli-test/"]
    assert main([*common, "put", str(src), "--ttl", "30"]) == 0
    capsys.readouterr()
    assert main([*common, "ls"]) == 0
    assert "portway/v1/services/shop/web/onprem" in capsys.readouterr().out


def test_an_unreachable_backend_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["registry", "--backend", "etcd", "--endpoints", "http://127.0.0.1:9", "ls"])
    assert code == 1
    assert "no etcd endpoint answered" in capsys.readouterr().err
