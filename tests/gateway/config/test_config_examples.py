"""The shipped configs: each passes `portway check`, says what it needs, matches the schema file,
round-trips; hybrid-residency passes once its certificate files exist."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import trustme
from pydantic import TypeAdapter

from gateway.config.loader import (
    check_config_file,
    check_config_text,
    demo_config_text,
    load_config,
    load_config_text,
    load_demo_config,
)
from gateway.config.model import GatewayConfig, ListenerProtocol
from gateway.config.schema import REGENERATE_COMMAND, SCHEMA_FILE, render_schema
from gateway.config.source import parse_source
from portway.cli import main

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "config").glob("*.yaml"))
REQUIRED = {
    "single-cluster.yaml",
    "two-clusters-failover.yaml",
    "canary-header.yaml",
    "hybrid-residency.yaml",
    "demo.yaml",
    "local-static.yaml",
}
# Examples that name files only their users have: the one issue allowed is that
# each named file cannot be read (`portway check` tells the newcomer which).
NEEDS_FILES = {
    "hybrid-residency.yaml": {
        "listeners[0].tls.certificates[0].certFile": "/etc/portway/tls/api.example.eu.crt",
        "listeners[0].tls.certificates[0].keyFile": "/etc/portway/tls/api.example.eu.key",
        "backends[0].tlsValidation.caFile": "/etc/portway/tls/internal-ca.pem",
        "backends[1].tlsValidation.caFile": "/etc/portway/tls/internal-ca.pem",
    }
}


def test_every_required_example_exists() -> None:
    assert {path.name for path in EXAMPLES} >= REQUIRED


SELF_CONTAINED = [path for path in EXAMPLES if path.name not in NEEDS_FILES]


@pytest.mark.parametrize("path", SELF_CONTAINED, ids=lambda p: p.name)
def test_example_has_no_issues_at_all(path: Path) -> None:
    report = check_config_file(path)
    assert report.issues == (), "\n".join(str(issue) for issue in report.issues)
    assert report.ok and report.config is not None


@pytest.mark.parametrize("path", SELF_CONTAINED, ids=lambda p: p.name)
def test_example_passes_portway_check(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "checked 1 file: 0 errors, 0 warnings: ok"


@pytest.mark.parametrize("name", sorted(NEEDS_FILES))
def test_example_needing_files_reports_only_each_missing_file(name: str) -> None:
    report = check_config_file(ROOT / "config" / name)
    found = {issue.path: issue.message for issue in report.issues}
    assert set(found) == set(NEEDS_FILES[name])
    for field, file in NEEDS_FILES[name].items():
        assert found[field] == f"cannot read {file!r}: No such file or directory"


def test_hybrid_residency_passes_with_its_certificate_in_place(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("api.example.eu")
    cert_file, key_file = tmp_path / "api.crt", tmp_path / "api.key"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    text = (ROOT / "config" / "hybrid-residency.yaml").read_text(encoding="utf-8")
    text = text.replace("/etc/portway/tls/api.example.eu.crt", str(cert_file))
    text = text.replace("/etc/portway/tls/api.example.eu.key", str(key_file))
    ca_file = tmp_path / "internal-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    text = text.replace("/etc/portway/tls/internal-ca.pem", str(ca_file))
    report = check_config_text(text, "hybrid-residency.yaml")
    assert report.issues == (), "\n".join(str(issue) for issue in report.issues)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_header_says_what_it_needs(path: Path) -> None:
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# "))
    assert any(line.startswith("Needs:") for line in header), (
        f"{path.name}: the comment at the top says what the example needs in a 'Needs:' line"
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_the_json_schema(path: Path) -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    data = parse_source(path.read_text(encoding="utf-8"), str(path)).data
    jsonschema.Draft202012Validator(schema).validate(data)


@pytest.mark.parametrize("path", SELF_CONTAINED, ids=lambda p: p.name)
def test_example_dumped_and_reloaded_is_equal(path: Path) -> None:
    config = load_config(path)
    # defaults left out: a written field the gateway does not enforce yet is an error
    dumped = TypeAdapter(GatewayConfig).dump_python(
        config, mode="json", by_alias=True, exclude_defaults=True
    )
    assert load_config_text(json.dumps(dumped), "dumped.json") == config


def test_schema_file_is_up_to_date() -> None:
    on_disk = SCHEMA_FILE.read_text(encoding="utf-8")
    assert on_disk == render_schema(), (
        f"{SCHEMA_FILE.name} is stale; regenerate it with: {REGENERATE_COMMAND}"
    )


def test_schema_rejects_what_the_loader_rejects() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    bad = {"listeners": [{"name": "web", "protocol": "HTTP", "port": 80, "adress": "x"}]}
    assert not validator.is_valid(bad)
    assert not validator.is_valid({"registry": {"debounce": "5 minutes"}})
    assert validator.is_valid({"registry": {"debounce": "250ms"}})
    assert validator.is_valid({"registry": {"debounce": 0.5}})


def test_check_schema_flag_prints_the_schema_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--schema"]) == 0
    assert capsys.readouterr().out == SCHEMA_FILE.read_text(encoding="utf-8")


def test_packaged_demo_is_identical_to_config_demo() -> None:
    assert demo_config_text() == (ROOT / "config" / "demo.yaml").read_text(encoding="utf-8"), (
        "gateway/config/defaults/demo.yaml is the source; copy it to config/demo.yaml"
    )


def test_demo_runs_on_loopback_from_the_files_registry() -> None:
    config = load_demo_config()
    (listener,) = config.listeners
    assert (listener.protocol, listener.address, listener.port) == (
        ListenerProtocol.HTTP,
        "127.0.0.1",
        18080,
    )
    assert config.registry.type == "files" and config.registry.path
    assert config.admin.address == "127.0.0.1"
    assert all(backend.service is not None for backend in config.backends)
    assert {b.name for b in config.backends} == {"shop", "shop-canary"}
    assert any(rule.canary is not None for route in config.routes for rule in route.rules)
