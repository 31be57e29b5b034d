"""The fast data loader and the positioned loader agree; positions cost nothing until asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.loader import check_config_text
from gateway.config.source import _positioned, parse_source

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "config").glob("*.yaml"))

TRICKY = """\
version: 1
a: yes
b: 0o17
c: 1:30
d: ~
e: 2026-01-01
f: "\\ud83d\\ude00"
g: [1, 2.5, true, null, "x"]
h: {1: one, 2: two}
i: &anchor {p: 1}
j: *anchor
"""


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_fast_loader_gives_the_data_of_the_positioned_loader(path: Path) -> None:
    text = path.read_text()
    assert parse_source(text, str(path)).data == _positioned(text, str(path)).data


def test_yaml_12_scalars_anchors_and_odd_keys_read_the_same_by_both_loaders() -> None:
    fast = parse_source(TRICKY, "t.yaml")
    assert fast.data == _positioned(TRICKY, "t.yaml").data
    assert fast.data["a"] == "yes" and fast.data["c"] == "1:30" and fast.data["f"] == "😀"
    assert fast.data["h"] == {"1": "one", "2": "two"}
    assert fast.positions.text is not None, "a clean parse computes no positions"


def test_positions_are_computed_when_an_issue_needs_one() -> None:
    text = "version: 1\nlisteners:\n  - name: web\n    protocol: GOPHER\n    port: 80\n"
    report = check_config_text(text, "gw.yaml")
    assert any(str(issue).startswith("gw.yaml:4:15: ") for issue in report.errors)


def test_merge_keys_and_syntax_errors_go_through_the_positioned_loader() -> None:
    merged = parse_source("base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n", "m.yaml")
    assert merged.data["use"] == {"x": 1, "y": 2}
    report = check_config_text("listeners: [unclosed\n", "bad.yaml")
    (issue,) = report.issues
    assert str(issue).startswith("bad.yaml:2:1: ") and "YAML syntax error" in str(issue)
