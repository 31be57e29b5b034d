"""The hot path runs compiled when built, and interpreted when its sources changed."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import compiled

ROOT = Path(__file__).resolve().parents[2]


def _fake_build(root: Path) -> None:
    """A `gateway` dir with every hot-path source, a fake extension each, and the record."""
    for name in compiled.HOT_PATH:
        source = compiled.source_path(root, name)
        source.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(compiled.source_path(compiled.HERE, name), source)
        source.with_suffix(importlib.machinery.EXTENSION_SUFFIXES[0]).write_bytes(b"")
    compiled.write_record(root)


def test_a_fresh_build_is_used(tmp_path: Path) -> None:
    _fake_build(tmp_path)
    assert compiled.why_interpreted(tmp_path, env={}) is None


def test_an_edited_source_makes_the_whole_hot_path_interpreted(tmp_path: Path) -> None:
    _fake_build(tmp_path)
    with (tmp_path / "http" / "plan.py").open("a") as f:
        f.write("# edited\n")
    why = compiled.why_interpreted(tmp_path, env={})
    assert why is not None and "http.plan" in why and "reinstall" in why


def test_portway_pure_and_missing_parts_are_reasons(tmp_path: Path) -> None:
    assert compiled.why_interpreted(tmp_path, env={}) == "not built"
    _fake_build(tmp_path)
    assert compiled.why_interpreted(tmp_path, env={"PORTWAY_PURE": "1"}) == "PORTWAY_PURE is set"
    assert compiled.why_interpreted(tmp_path, env={"PORTWAY_PURE": "0"}) is None
    next((tmp_path / "upstream").glob("pool.*.so")).unlink()
    assert compiled.why_interpreted(tmp_path, env={}) == "partly built: upstream.pool missing"
    _fake_build(tmp_path)
    (tmp_path / "compiled.json").unlink()
    assert "compiled.json" in (compiled.why_interpreted(tmp_path, env={}) or "")


@pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler here"
)
def test_this_installation_runs_the_compiled_hot_path() -> None:
    """The shipped build: `pip install` compiled the hot path and nothing went stale."""
    if os.environ.get("PORTWAY_PURE", "") not in ("", "0"):
        pytest.skip("PORTWAY_PURE is set: this run checks the interpreted hot path")
    import gateway.http.proxy

    assert compiled.state == "compiled"
    assert not gateway.http.proxy.__file__.endswith(".py")


@pytest.mark.e2e
def test_the_interpreted_hot_path_passes_the_proxy_tests() -> None:
    """The same sources, interpreted (`PORTWAY_PURE=1`): the fallback when no compiler ran."""
    env = {**os.environ, "PORTWAY_PURE": "1"}
    tests = [
        "tests/gateway/http/test_http_proxy.py",
        "tests/gateway/http/test_http_strict.py",
        "tests/gateway/http/test_retry_failover.py",
    ]
    code = "import gateway.compiled as c, gateway.http.proxy as p; print(c.state, p.__file__)"
    probe = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert probe.stdout.startswith("interpreted: PORTWAY_PURE is set"), probe.stderr
    assert probe.stdout.strip().endswith("http/proxy.py")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout


def test_an_extension_left_by_an_earlier_build_is_stray(tmp_path: Path) -> None:
    """A module compiled once and dropped from HOT_PATH later must not shadow its source."""
    _fake_build(tmp_path)
    (tmp_path / "routing").mkdir(exist_ok=True)
    (tmp_path / "routing" / "compiler.py").write_text("")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (tmp_path / "routing" / f"compiler{suffix}").write_bytes(b"")
    (tmp_path / f"orphan{suffix}").write_bytes(b"")  # no source: nothing to prefer
    assert compiled.stray_extensions(tmp_path) == {"routing.compiler"}
