"""Every shipped drill, run for real: a gateway process, simulated clusters, faults, a verdict.

Each runs `portway drill` as a user would (the shipped drills are short:
5-10 s of traffic) and must pass its own expectations; a few facts of each
report are checked besides, so a drill that judged nothing could not pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
DRILLS = ROOT / "config" / "drills"


def drill(name: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    res = subprocess.run(
        [sys.executable, "-m", "portway", "drill", str(DRILLS / f"{name}.yaml"), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=ROOT,
    )
    try:
        body = json.loads(res.stdout)
    except ValueError:
        pytest.fail(f"no JSON report (exit {res.returncode}): {res.stderr[-3000:]}")
    return res.returncode, body, res.stderr


def failed_expectations(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in body["expectations"] if not e["met"]]


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_zone_loss_moves_traffic_to_the_other_zones_without_a_failed_request(
    tmp_path: Path,
) -> None:
    html = tmp_path / "zone-loss.html"
    code, body, _ = drill("zone-loss", "--html", str(html))
    assert code == 0, failed_expectations(body)
    assert body["totals"]["failed"] == 0 and body["totals"]["requests"] > 1500
    assert set(body["windows"]["during"]["share"]) == {"prod-b", "prod-c"}
    assert all(f["failback_s"] is not None and f["failback_s"] < 2 for f in body["faults"])
    page = html.read_text()
    assert page.count("<svg") == 2 and "kill-endpoints prod-a" in page


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_local_first_failover_spills_to_the_next_zone_and_comes_back() -> None:
    code, body, _ = drill("local-first-failover")
    assert code == 0, failed_expectations(body)
    assert 0.35 <= body["windows"]["during"]["share"]["prod-a"] <= 0.75  # incl. slow start


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_canary_is_stepped_up_and_rolled_back_by_rewriting_weights() -> None:
    code, body, _ = drill("canary-rollback")
    assert code == 0, failed_expectations(body)
    shares = {e["name"]: e["measured"] for e in body["expectations"] if "share" in e["name"]}
    assert len(shares) == 4
    assert body["windows"]["during"]["p99_ms"] > 80  # the slow canary was really slow


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_hybrid_residency_never_crosses_the_allowed_regions() -> None:
    code, body, _ = drill("hybrid-data-residency")
    assert code == 0, failed_expectations(body)
    assert body["requests_outside_allowed_regions"] == 0
    assert "eks-us-east-1" not in body["totals"]["share"]
    assert body["windows"]["during"]["errors"].get("no_healthy_upstream", 0) > 0


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_black_holed_cluster_is_survived_by_timeouts_and_retries() -> None:
    code, body, _ = drill("black-holed-cluster")
    assert code == 0, failed_expectations(body)
    assert body["windows"]["during"]["share"].get("prod-a", 0) == 0
    assert body["windows"]["during"]["p99_ms"] > body["windows"]["before"]["p99_ms"]


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_registry_outage_is_invisible_to_users() -> None:
    code, body, _ = drill("registry-outage")
    assert code == 0, failed_expectations(body)
    outage = body["faults"][0]
    assert outage["kind"] == "registry-outage" and outage["end_s"] - outage["start_s"] > 1.9
    assert outage["took_effect_s"] is not None and outage["took_effect_s"] < 1.5, (
        "the gateway never said its registry was down: the outage was not real"
    )
    assert body["totals"]["failed"] == 0 and body["windows"]["during"]["requests"] > 300


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_drill_against_a_gateway_already_running(tmp_path: Path) -> None:
    config = (DRILLS / "gateways" / "local-first.yaml").read_text()
    (tmp_path / "gateway.yaml").write_text(config)
    (tmp_path / "registry").mkdir()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "portway", "gateway", "--config", "gateway.yaml"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        code, body, _ = drill(
            "zone-loss",
            "--gateway-admin",
            "http://127.0.0.1:19110",
            "--registry",
            str(tmp_path / "registry"),
        )
    finally:
        gateway.terminate()
        gateway.wait(15)
    assert code == 0, failed_expectations(body)
    assert body["admin_url"] == "http://127.0.0.1:19110"
    assert set(body["windows"]["during"]["share"]) == {"prod-b", "prod-c"}


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_certificate_renewed_under_traffic_fails_no_request() -> None:
    code, body, _ = drill("certificate-rotation")
    assert code == 0, failed_expectations(body)
    rotation = body["faults"][0]
    assert rotation["kind"] == "rotate-certificate" and rotation["took_effect_s"] < 2
    assert body["totals"]["failed"] == 0 and body["totals"]["requests"] > 500


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_an_etcd_outage_longer_than_the_ttl_is_invisible_to_users() -> None:
    code, body, _ = drill("etcd-outage")
    assert code == 0, failed_expectations(body)
    outage = body["faults"][0]
    assert outage["kind"] == "registry-outage" and outage["end_s"] - outage["start_s"] > 2.0
    assert outage["took_effect_s"] is not None and outage["took_effect_s"] < 1.5
    assert body["windows"]["during"]["requests"] > 400
