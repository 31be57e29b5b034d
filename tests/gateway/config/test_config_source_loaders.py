"""The fast data loader and the positioned loader agree; positions cost nothing until asked."""

from __future__ import annotations

import os
import subprocess
import sys
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


RETAINED = """
import gc, sys
def rss_kib():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
from gateway.config.source import parse_source
text = "routes:\\n" + "".join(
    f"  - {{name: s{i}, hostnames: [s{i}.example], rules: [{{backendRefs: [{{name: b{i}}}]}}]}}\\n"
    for i in range(20000)
)
parse_source("a: 1", "warm.yaml")
gc.collect()
before = rss_kib()
parsed = parse_source(text, "big.yaml")
assert len(parsed.data["routes"]) == 20000
del parsed
gc.collect()
print(rss_kib() - before)
"""


def test_a_large_config_leaves_no_parse_memory_resident_once_dropped() -> None:
    """yaml-rs's allocator kept ~18 MiB of this parse resident after it was freed (< 1 now)."""
    env = {k: v for k, v in os.environ.items() if k != "MIMALLOC_PURGE_DELAY"}
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", RETAINED],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=60,
        check=True,
    )
    assert int(out.stdout) < 8 * 1024, f"{int(out.stdout)} KiB still resident"
