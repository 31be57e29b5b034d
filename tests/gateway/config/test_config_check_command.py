"""`portway check`: output lines, summary, exit codes and --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portway.cli import main

GOOD = """\
listeners: [{name: web, protocol: HTTP, port: 8080}]
routes:
  - name: r
    rules: [{backendRefs: [{name: api}]}]
backends:
  - name: api
    endpoints: [{address: 10.0.0.1, port: 80}]
"""
WARNS = GOOD + "  - name: spare\n    endpoints: [{address: 10.0.0.2, port: 80}]\n"
BAD = "listeners: [{name: web, protocol: HTTP, port: 0}]\n"


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_clean_file_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", write(tmp_path, "good.yaml", GOOD)]) == 0
    assert capsys.readouterr().out == "checked 1 file: 0 errors, 0 warnings: ok\n"


def test_warnings_alone_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "warn.yaml", WARNS)
    assert main(["check", path]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:8:11: backends[1].name: warning: no route uses this backend",
        "checked 1 file: 0 errors, 1 warning: ok",
    ]


def test_any_error_exits_one_and_all_files_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, "bad.yaml", BAD)
    good = write(tmp_path, "good.yaml", GOOD)
    assert main(["check", bad, good]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{bad}:1:47: listeners[0].port: 0 is out of range; allowed: 1 to 65535",
        "checked 2 files: 1 error, 0 warnings: FAILED",
    ]


def test_missing_file_is_an_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nope.yaml")
    assert main(["check", missing]) == 1
    assert capsys.readouterr().out.startswith(f"{missing}:1:1: cannot read the file")


def test_json_output_is_machine_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, "bad.yaml", BAD)
    assert main(["check", "--json", bad]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["errors"] == 1 and report["warnings"] == 0
    (entry,) = report["files"]
    assert entry["file"] == bad and len(entry["digest"]) == 12
    assert entry["issues"] == [
        {
            "file": bad,
            "line": 1,
            "column": 47,
            "path": "listeners[0].port",
            "message": "0 is out of range; allowed: 1 to 65535",
            "severity": "error",
        }
    ]


def test_no_files_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 2
    assert "give at least one FILE" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", "--frobnicate"])
    assert exited.value.code == 2
