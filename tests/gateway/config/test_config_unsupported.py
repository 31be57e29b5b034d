"""Fields the gateway does not enforce yet are rejected, never accepted and ignored."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.config import unsupported
from gateway.config.field_paths import pattern_parts
from gateway.config.loader import check_config_text
from gateway.config.schema import subschema
from gateway.config.unsupported import NOT_SUPPORTED
from portway.cli import main

ROOT = Path(__file__).resolve().parents[3]

BASE = """\
version: 1
listeners:
  - {name: web, protocol: HTTP, port: 8080}
routes:
  - name: shop
    rules:
      - backendRefs: [{name: api}]
backends:
  - name: api
    endpoints: [{address: 127.0.0.1, port: 9000}]
"""
CANARY_BASE = BASE + "  - name: api-canary\n    endpoints: [{address: 127.0.0.1, port: 9001}]\n"
RULE = "      - backendRefs: [{name: api}]\n"
ROLLOUT = "rollout: {steps: [{percent: 50}]}"
ROLLOUT_RULE = RULE + "        canary: {backend: api-canary, " + ROLLOUT + "}\n"
BLOCK = "routes[].rules[].canary.rollout"
"""A block the mechanism is shown on (enforced today: these tests list it as
unsupported themselves, to hold `unsupported_issues` to its contract)."""


@pytest.fixture
def block_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unsupported, "NOT_SUPPORTED", (*NOT_SUPPORTED, BLOCK))


def messages(text: str) -> list[str]:
    return [str(issue) for issue in check_config_text(textwrap.dedent(text), "gw.yaml").issues]


@pytest.mark.parametrize("pattern", NOT_SUPPORTED)
def test_every_not_supported_entry_names_a_field_of_the_schema(pattern: str) -> None:
    path = [0 if part == "[]" else part for part in pattern_parts(pattern)]
    assert subschema(path) is not None, f"{pattern} is not a field of the config schema"


@pytest.mark.usefixtures("block_unsupported")
def test_an_unsupported_block_is_rejected_at_its_key_with_file_line_col() -> None:
    text = CANARY_BASE.replace(
        "      - backendRefs: [{name: api}]\n",
        ROLLOUT_RULE,
    )
    assert messages(text) == [
        "gw.yaml:8:39: routes[0].rules[0].canary.rollout: not supported yet: the gateway does not "
        "enforce this field; remove it"
    ]
    assert check_config_text(text, "gw.yaml").config is None


@pytest.mark.usefixtures("block_unsupported")
def test_each_written_item_of_a_list_is_reported() -> None:
    text = CANARY_BASE.replace(
        "      - backendRefs: [{name: api}]\n",
        "      - backendRefs: [{name: api}]\n"
        "        canary: {backend: api-canary, rollout: {steps: [{percent: 50}]}}\n"
        "      - backendRefs: [{name: api}]\n"
        "        canary: {backend: api-canary, rollout: {steps: [{percent: 50}]}}\n",
    )
    found = messages(text)
    assert [line.split(": ")[1] for line in found] == [
        "routes[0].rules[0].canary.rollout",
        "routes[0].rules[1].canary.rollout",
    ]


def test_a_leaf_of_an_enforced_block_is_rejected_alone() -> None:
    text = BASE + "gateway: {region: eu, cluster: prod}\n"
    assert [line.split(": ")[1] for line in messages(text)] == ["gateway.cluster"]


@pytest.mark.usefixtures("block_unsupported")
def test_null_is_the_key_left_out() -> None:
    text = CANARY_BASE.replace(
        "      - backendRefs: [{name: api}]\n",
        RULE + "        canary: {backend: api-canary, percent: 10, rollout: null}\n",
    )
    assert messages(text) == []


@pytest.mark.usefixtures("block_unsupported")
def test_unsupported_and_shape_errors_are_reported_together() -> None:
    text = CANARY_BASE.replace(
        "      - backendRefs: [{name: api}]\n",
        RULE + "        canary: {backend: api-canary, percent: 500, " + ROLLOUT + "}\n",
    )
    found = messages(text)
    assert any("routes[0].rules[0].canary.rollout: not supported yet" in line for line in found)
    assert any("canary.percent" in line for line in found)


@pytest.mark.usefixtures("block_unsupported")
def test_portway_check_fails_on_an_unsupported_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(
        CANARY_BASE.replace(
            "      - backendRefs: [{name: api}]\n",
            ROLLOUT_RULE,
        )
    )
    assert main(["check", str(config)]) == 1
    out = capsys.readouterr().out
    assert f"{config}:8:39: routes[0].rules[0].canary.rollout: not supported yet" in out


def test_the_gateway_refuses_to_start_on_an_unsupported_field(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(CANARY_BASE.replace("version: 1\n", "version: 1\ngateway: {cluster: prod}\n"))
    done = subprocess.run(
        [sys.executable, "-m", "portway", "gateway", "--config", str(config), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert f"{config}:2:11: gateway.cluster: not supported yet" in done.stderr


def test_a_rollout_is_enforced_and_so_accepted() -> None:
    text = CANARY_BASE.replace(
        "      - backendRefs: [{name: api}]\n",
        ROLLOUT_RULE,
    )
    assert BLOCK not in NOT_SUPPORTED
    assert messages(text) == []
