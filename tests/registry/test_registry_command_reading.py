"""`portway registry`: reading verbs never create, bad records are named, put names its file."""

from __future__ import annotations

from pathlib import Path

import pytest

from portway.cli import main

TYPO = """\
cluster: b
namespace: shop
service: web
ports: [{name: http, port: 80, nodePort: 30080}]
nodes:
  - {name: n1, address: 10.0.0.1, raedy: false}
"""
GOOD = TYPO.replace("raedy", "ready")


def test_ls_without_dir_creates_nothing_and_names_the_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PORTWAY_REGISTRY_DIR", raising=False)
    assert main(["registry", "ls"]) == 1
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err == (
        "portway registry: registry directory 'registry' (the default) does not exist\n"
    )


@pytest.mark.parametrize("action", [["ls"], ["get", "shop/web/a"], ["watch", "--count", "1"]])
def test_a_mistyped_dir_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: list[str]
) -> None:
    missing = tmp_path / "regsitry"
    assert main(["registry", "--dir", str(missing), *action]) == 1
    assert not missing.exists()
    assert capsys.readouterr().err == (
        f"portway registry: registry directory '{missing}' (--dir) does not exist\n"
    )


def test_put_refuses_a_typo_naming_the_file_the_field_and_the_guess(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "rec.yaml"
    src.write_text(TYPO)
    assert main(["registry", "--dir", str(tmp_path / "reg"), "put", str(src)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"portway registry: {src}: nodes[0].raedy: unknown key 'raedy'; did you mean 'ready'?"
    )
    assert not (tmp_path / "reg").exists() or not list((tmp_path / "reg").glob("*.json"))


def test_put_on_bad_json_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "rec.json"
    src.write_text('{"v": 1, "cluster": ')
    assert main(["registry", "--dir", str(tmp_path / "reg"), "put", str(src)]) == 1
    assert capsys.readouterr().err.startswith(f"portway registry: {src}: not JSON: ")


def test_ls_names_each_bad_record_with_its_reason_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = tmp_path / "reg"
    reg.mkdir()
    (reg / "shop.web.b.yaml").write_text(TYPO)
    (reg / "shop.web.a.yaml").write_text(GOOD.replace("cluster: b", "cluster: a"))
    assert main(["registry", "--dir", str(reg), "ls"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("portway/v1/services/shop/web/a\t")
    assert captured.err.splitlines() == [
        f"portway registry: bad record {reg / 'shop.web.b.yaml'}: nodes[0].raedy: unknown key "
        "'raedy'; did you mean 'ready'? (allowed keys: name, address, zone, ready, "
        "localEndpoints)",
        f"1 records in {reg} at revision 1, 1 bad (skipped)",
    ]


def test_ls_on_etcd_names_a_bad_record_by_key_with_its_reason(
    etcd_endpoints: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio
    import json
    import uuid

    from portway.registry.etcd import EtcdRegistry

    root = f"ls-{uuid.uuid4().hex[:6]}/"
    record = {
        "v": 1,
        "cluster": "b",
        "namespace": "shop",
        "service": "web",
        "zoen": "a",
    }
    key = "portway/v1/services/shop/web/b"

    async def put() -> None:
        registry = EtcdRegistry(etcd_endpoints, root=root)
        try:
            await registry.put_raw(key, json.dumps(record).encode())
        finally:
            await registry.close()

    asyncio.run(put())
    common = ["registry", "--backend", "etcd", "--endpoints", ",".join(etcd_endpoints)]
    assert main([*common, "--root", root, "ls"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(
        f"portway registry: bad record {key}: zoen: unknown key 'zoen'; did you mean 'zones'?"
    )
    assert err[1].startswith("0 records at revision ") and err[1].endswith(", 1 bad (skipped)")


def test_put_of_a_file_that_is_not_there_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["registry", "--dir", str(tmp_path / "reg"), "put", str(missing)]) == 1
    assert capsys.readouterr().err == (
        f"portway registry: {missing}: cannot read it: No such file or directory\n"
    )
