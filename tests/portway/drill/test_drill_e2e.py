"""Every shipped drill, run for real: a gateway process, simulated clusters, faults, a verdict.

Each runs `portway drill` as a user would (the shipped drills are short:
5-10 s of traffic) and must pass its own expectations; a few facts of each
report are checked besides, so a drill that judged nothing could not pass.
The runs go two at a time, each on a loopback net of its own (`drill_pool`);
local-first-failover and zone-loss share one gateway started by hand.
"""

from __future__ import annotations

from typing import Any

import pytest
from drill_pool import DrillPool, DrillRun

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


def report(run: DrillRun) -> dict[str, Any]:
    if run.body is None:
        pytest.fail(f"no JSON report (exit {run.code}): {run.stderr[-3000:]}")
    assert run.code == 0, [e for e in run.body["expectations"] if not e["met"]]
    return run.body


@pytest.mark.drill("running-gateway")
def test_zone_loss_moves_traffic_to_the_other_zones_without_a_failed_request(
    drills: DrillPool,
) -> None:
    run = drills.result("running-gateway", "zone-loss")
    body = report(run)
    assert body["totals"]["failed"] == 0 and body["totals"]["requests"] > 1500
    assert set(body["windows"]["during"]["share"]) == {"prod-b", "prod-c"}
    assert all(f["failback_s"] is not None and f["failback_s"] < 2 for f in body["faults"])
    page = (run.workdir / "report.html").read_text()
    assert page.count("<svg") == 2 and "kill-endpoints prod-a" in page


@pytest.mark.drill("running-gateway")
def test_local_first_failover_spills_to_the_next_zone_and_comes_back(drills: DrillPool) -> None:
    body = report(drills.result("running-gateway", "local-first-failover"))
    assert 0.35 <= body["windows"]["during"]["share"]["prod-a"] <= 0.75  # incl. slow start


@pytest.mark.drill("running-gateway")
def test_drills_against_a_gateway_already_running_reuse_it(drills: DrillPool) -> None:
    first = drills.result("running-gateway", "local-first-failover")
    second = drills.result("running-gateway", "zone-loss")
    for run in (first, second):
        body = report(run)
        assert body["admin_url"].endswith(":19110") and "127.0.0.1" not in body["admin_url"]
        assert run.gateway_alive, "the drill stopped a gateway it did not start"
    assert first.gateway_pid == second.gateway_pid
    assert report(first)["admin_url"] == report(second)["admin_url"]
    assert set(report(second)["windows"]["during"]["share"]) == {"prod-b", "prod-c"}


@pytest.mark.drill("canary-rollback")
def test_canary_is_stepped_up_and_rolled_back_by_rewriting_weights(drills: DrillPool) -> None:
    body = report(drills.result("canary-rollback"))
    shares = {e["name"]: e["measured"] for e in body["expectations"] if "share" in e["name"]}
    assert len(shares) == 4
    assert body["windows"]["during"]["p99_ms"] > 80  # the slow canary was really slow


@pytest.mark.drill("canary-rollout")
def test_the_rollout_engine_steps_a_canary_up_and_rolls_it_back_when_it_turns_slow(
    drills: DrillPool,
) -> None:
    body = report(drills.result("canary-rollout"))
    shares = {e["name"]: e["measured"] for e in body["expectations"] if "share" in e["name"]}
    assert set(shares) == {"share of canary 2.5-4 s", "share of canary 5.5-9 s"}
    assert shares["share of canary 5.5-9 s"] == "0.0%"
    # at 50% for the whole fault the canary would take half of it: rolled back early
    assert body["windows"]["during"]["share"].get("canary", 0) < 0.15
    assert body["windows"]["during"]["p99_ms"] > 50  # the canary was really slow
    assert body["totals"]["failed"] == 0


@pytest.mark.drill("hybrid-data-residency")
def test_hybrid_residency_never_crosses_the_allowed_regions(drills: DrillPool) -> None:
    body = report(drills.result("hybrid-data-residency"))
    assert body["requests_outside_allowed_regions"] == 0
    assert "eks-us-east-1" not in body["totals"]["share"]
    assert body["windows"]["during"]["errors"].get("no_healthy_upstream", 0) > 0


@pytest.mark.drill("black-holed-cluster")
def test_black_holed_cluster_is_survived_by_timeouts_and_retries(drills: DrillPool) -> None:
    body = report(drills.result("black-holed-cluster"))
    assert body["windows"]["during"]["share"].get("prod-a", 0) == 0
    assert body["windows"]["during"]["p99_ms"] > body["windows"]["before"]["p99_ms"]


@pytest.mark.drill("registry-outage")
def test_registry_outage_is_invisible_to_users(drills: DrillPool) -> None:
    body = report(drills.result("registry-outage"))
    outage = body["faults"][0]
    assert outage["kind"] == "registry-outage" and outage["end_s"] - outage["start_s"] > 1.9
    assert outage["took_effect_s"] is not None and outage["took_effect_s"] < 1.5, (
        "the gateway never said its registry was down: the outage was not real"
    )
    assert body["totals"]["failed"] == 0 and body["windows"]["during"]["requests"] > 300


@pytest.mark.drill("certificate-rotation")
def test_a_certificate_renewed_under_traffic_fails_no_request(drills: DrillPool) -> None:
    body = report(drills.result("certificate-rotation"))
    rotation = body["faults"][0]
    assert rotation["kind"] == "rotate-certificate" and rotation["took_effect_s"] < 2
    assert body["totals"]["failed"] == 0 and body["totals"]["requests"] > 500


@pytest.mark.drill("etcd-outage")
def test_an_etcd_outage_longer_than_the_ttl_is_invisible_to_users(drills: DrillPool) -> None:
    body = report(drills.result("etcd-outage"))
    outage = body["faults"][0]
    assert outage["kind"] == "registry-outage" and outage["end_s"] - outage["start_s"] > 2.0
    assert outage["took_effect_s"] is not None and outage["took_effect_s"] < 1.5
    assert body["windows"]["during"]["requests"] > 400
