"""Every file a config names is checked by `portway check` and at startup, naming field and file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from gateway.config.loader import check_config_text
from gateway.config.referenced_files import FILE_FIELDS, FileKind, file_problem
from gateway.config.schema import config_schema

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pair(tmp_path: Path, ca: trustme.CA) -> tuple[Path, Path]:
    cert = ca.issue_cert("shop.example.com")
    cert_file, key_file = tmp_path / "shop.crt", tmp_path / "shop.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return cert_file, key_file


def https(cert: object, key: object) -> str:
    return f"""\
version: 1
listeners:
  - name: secure
    protocol: HTTPS
    port: 8443
    tls:
      certificates:
        - certFile: {cert}
          keyFile: {key}
"""


def messages(text: str) -> list[str]:
    return [str(issue) for issue in check_config_text(text, "gw.yaml").issues]


def test_a_valid_certificate_and_its_key_pass(pair: tuple[Path, Path]) -> None:
    assert messages(https(*pair)) == []


def test_a_missing_certificate_names_the_field_the_file_and_the_position(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    missing = tmp_path / "nope.crt"
    assert messages(https(missing, pair[1])) == [
        f"gw.yaml:8:21: listeners[0].tls.certificates[0].certFile: cannot read '{missing}': "
        "No such file or directory"
    ]


def test_a_key_that_is_not_a_key(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    junk = tmp_path / "junk.key"
    junk.write_text("hello\n")
    assert messages(https(pair[0], junk)) == [
        f"gw.yaml:9:20: listeners[0].tls.certificates[0].keyFile: '{junk}' is not a PEM "
        "private key: no '-----BEGIN ... PRIVATE KEY-----' block"
    ]


def test_a_certificate_that_is_not_a_certificate(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    found = messages(https(pair[1], pair[1]))
    assert found == [
        f"gw.yaml:8:21: listeners[0].tls.certificates[0].certFile: '{pair[1]}' is not a PEM "
        "certificate (chain): no '-----BEGIN CERTIFICATE-----' block"
    ]


def test_a_key_of_another_certificate_is_caught_as_the_listener_would(
    tmp_path: Path, ca: trustme.CA, pair: tuple[Path, Path]
) -> None:
    other = tmp_path / "other.key"
    ca.issue_cert("other.example.com").private_key_pem.write_to_path(str(other))
    assert messages(https(pair[0], other)) == [
        f"gw.yaml:9:20: listeners[0].tls.certificates[0].keyFile: the private key in "
        f"'{other}' does not belong to the certificate in '{pair[0]}'"
    ]


def test_jwks_and_key_list_contents_are_checked(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text("{not json")
    assert (file_problem(str(jwks), FileKind.JWKS) or "").startswith(
        f"'{jwks}' is not a JSON Web Key Set: JSON syntax error"
    )
    jwks.write_text(json.dumps({"keys": []}))
    assert file_problem(str(jwks), FileKind.JWKS) is None
    keys = tmp_path / "keys.txt"
    keys.write_text("# only a comment\n\n")
    assert file_problem(str(keys), FileKind.KEY_LIST) == (
        f"'{keys}' is not API key hashes, one per line: the file holds no keys"
    )
    keys.write_text("# billing\nbilling " + "ab" * 32 + "\n" + "cd" * 32 + "\n")
    assert file_problem(str(keys), FileKind.KEY_LIST) is None
    keys.write_text("billing s3cr3t-in-clear\n")
    assert file_problem(str(keys), FileKind.KEY_LIST) == (
        f"'{keys}' is not API key hashes, one per line: line 1 is not 'ID SHA256HEX' or 'SHA256HEX'"
    )


def test_a_geoip_database_must_be_an_mmdb_file(tmp_path: Path) -> None:
    fake = tmp_path / "countries.mmdb"
    fake.write_bytes(b"not a database")
    assert file_problem(str(fake), FileKind.GEOIP_DATABASE) == (
        f"'{fake}' is not a MaxMind-format (.mmdb) database: no MaxMind metadata section "
        "(the file is not an .mmdb database)"
    )
    fake.write_bytes(b"\x00" * 64 + b"\xab\xcd\xefMaxMind.com" + b"\x00" * 16)
    assert file_problem(str(fake), FileKind.GEOIP_DATABASE) is None


def _file_fields(node: dict[str, object], path: str, out: set[str]) -> None:
    defs = config_schema()["$defs"]
    if "$ref" in node:
        node = defs[str(node["$ref"]).rsplit("/", 1)[-1]]
    for branch in node.get("anyOf", [node]):  # type: ignore[attr-defined]
        if "$ref" in branch:
            _file_fields(branch, path, out)
        if branch.get("type") == "array" and isinstance(branch.get("items"), dict):
            _file_fields(branch["items"], path + "[]", out)
        for key, child in branch.get("properties", {}).items():
            child_path = f"{path}.{key}" if path else key
            if key.endswith(("File", "Database")) or key in {"jwks", "caBundle"}:
                out.add(child_path)
            _file_fields(child, child_path, out)


def test_every_field_holding_a_file_path_is_declared() -> None:
    found: set[str] = set()
    _file_fields(config_schema(), "", found)
    assert found == set(FILE_FIELDS), "a `*File` field needs a line in FILE_FIELDS"


def test_the_gateway_refuses_to_start_naming_the_missing_key_file(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(https(pair[0], tmp_path / "gone.key").replace("8443", "1"))
    done = subprocess.run(
        [sys.executable, "-m", "portway", "gateway", "--config", str(config), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert (
        f"{config}:9:20: listeners[0].tls.certificates[0].keyFile: cannot read "
        f"'{tmp_path / 'gone.key'}': No such file or directory"
    ) in done.stderr
