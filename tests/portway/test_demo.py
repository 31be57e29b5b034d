"""`portway demo` end to end: simulated clusters, files registry, a real gateway process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_demo_fails_over_and_back_with_no_failed_request() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "portway", "demo", "--json", "--phase-seconds", "1.5"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(res.stdout)
    phases = {p["name"]: p for p in report["phases"]}
    assert list(phases) == [
        "steady",
        "node lost",
        "cluster lost",
        "cluster back",
        "canary override",
    ]
    for p in phases.values():
        assert p["requests"] > 50 and p["failed"] == 0, p
        assert p["met"], p
    assert phases["steady"]["share"].get("beta", 0) == 0
    assert phases["node lost"]["share"]["beta"] > 0.15
    assert "alpha" not in phases["cluster lost"]["share"]
    assert report["failover_s"] is not None and report["failover_s"] < 4.0
    assert report["recovery_s"] is not None and report["recovery_s"] <= 2.0
