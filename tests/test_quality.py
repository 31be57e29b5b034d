"""The tree's own gates: ruff lint/format clean, mypy --strict on the pure cores."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STRICT = [
    "gateway/routing",
    "gateway/rollout",
    "portway/model.py",
    "portway/record_parser.py",
    "controller/derive.py",
    "controller/placement.py",
    "controller/incremental.py",
]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed; install the dev extra: pip install -e '.[dev]'"
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_check_is_clean() -> None:
    res = _run(_tool("ruff"), "check", ".")
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_format_is_clean() -> None:
    res = _run(_tool("ruff"), "format", "--check", ".")
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.timeout(300)
def test_mypy_strict_on_pure_cores() -> None:
    targets = [t for t in STRICT if (ROOT / t).exists()]
    assert "gateway/routing" in targets and "portway/model.py" in targets
    res = _run(_tool("mypy"), "--strict", *targets)
    assert res.returncode == 0, res.stdout + res.stderr
