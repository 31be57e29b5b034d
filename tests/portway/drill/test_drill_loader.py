"""Scenario files: every shipped drill loads; every mistake is reported at file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from portway.drill.loader import ScenarioError, load_scenario, load_scenario_text
from portway.drill.scenario import FaultKind, scaled

ROOT = Path(__file__).resolve().parents[3]
DRILLS = sorted((ROOT / "config" / "drills").glob("*.yaml"))
GATEWAY = ROOT / "config" / "drills" / "gateways" / "local-first.yaml"

BASE = f"""\
version: 1
name: t
gateway: {{config: {GATEWAY}}}
clusters:
  - name: a
    region: r1
    nodes: [{{name: a-1, address: 127.0.9.1, zone: z1}}]
    services: [{{namespace: shop, name: web, nodePort: 30080}}]
traffic: {{url: "http://127.0.0.1:18110/", duration: 4s}}
"""


def issues_of(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        load_scenario_text(text, "drill.yaml")
    return [str(issue) for issue in caught.value.issues]


def test_the_shipped_drills_are_the_five_of_the_issue_and_three_more() -> None:
    assert {p.stem for p in DRILLS} == {
        "local-first-failover",
        "zone-loss",
        "black-holed-cluster",
        "canary-rollback",
        "canary-rollout",
        "hybrid-data-residency",
        "registry-outage",
        "certificate-rotation",
        "etcd-outage",
    }


@pytest.mark.parametrize("path", DRILLS, ids=lambda p: p.stem)
def test_every_shipped_drill_loads_with_its_gateway_config(path: Path) -> None:
    loaded = load_scenario(path)
    assert loaded.scenario.name == path.stem
    assert loaded.gateway_config.registry.type == loaded.scenario.registry.type
    assert loaded.scenario.faults and loaded.scenario.expect


def test_a_minimal_scenario_loads() -> None:
    loaded = load_scenario_text(BASE, "drill.yaml")
    assert loaded.scenario.traffic.duration_s == 4.0
    assert loaded.scenario.registry.ttl_s == 2.0


def test_a_misspelt_key_is_reported_at_its_position_with_a_suggestion() -> None:
    text = BASE.replace("duration: 4s", "duratoin: 4s")
    found = issues_of(text)
    assert any(
        i.startswith("drill.yaml:9:") and "unknown key 'duratoin'" in i and "duration" in i
        for i in found
    ), found


def test_a_fault_on_a_cluster_that_does_not_exist_points_at_the_cluster() -> None:
    text = BASE + "faults:\n  - {kind: kill-endpoints, cluster: nope, at: 1s}\n"
    found = issues_of(text)
    assert any(i.startswith("drill.yaml:11:") and "faults[0].cluster" in i for i in found), found


def test_a_field_the_fault_kind_does_not_use_is_an_error() -> None:
    text = BASE + "faults:\n  - {kind: stop-controller, cluster: a, delay: 1s, at: 1s}\n"
    assert any("faults[0].delay: not used by stop-controller" in i for i in issues_of(text))


def test_a_consul_registry_is_not_supported_yet() -> None:
    found = issues_of(BASE + "registry: {type: consul}\n")
    assert any("registry.type" in i and "not supported yet" in i for i in found), found


def test_an_etcd_drill_needs_a_gateway_reading_one_loopback_etcd() -> None:
    found = issues_of(BASE + "registry: {type: etcd}\n")  # its gateway reads files
    assert any("gateway.config" in i and "etcd registry with one endpoint" in i for i in found)
    loaded = load_scenario(ROOT / "config" / "drills" / "etcd-outage.yaml")
    assert loaded.gateway_config.registry.endpoints == ("http://127.0.0.1:23790",)


def test_a_rotation_needs_an_https_listener_whose_certificates_the_drill_makes() -> None:
    fault = "  - {kind: rotate-certificate, listener: http, at: 1s, until: 2s}\n"
    found = issues_of(BASE + "faults:\n" + fault)
    assert any("faults[0].listener: no HTTPS listener 'http'" in i for i in found), found
    assert any("faults[0].until: a rotation is not undone" in i for i in found), found


def test_drill_made_certificates_are_checked_with_throwaway_ones_in_place() -> None:
    loaded = load_scenario(ROOT / "config" / "drills" / "certificate-rotation.yaml")
    assert loaded.certificates == {
        "https": (("tls/shop.crt", "tls/shop.key", ("shop.drill.test", "127.0.0.1")),)
    }


def test_faults_must_lie_inside_the_drill() -> None:
    text = BASE + "faults:\n  - {kind: kill-endpoints, cluster: a, at: 3s, until: 9s}\n"
    assert any("faults[0].until" in i for i in issues_of(text))


def test_an_expectation_no_fault_can_exercise_is_an_error() -> None:
    text = BASE + "expect: {maxFailoverSeconds: 1}\n"
    assert any("expect.maxFailoverSeconds" in i for i in issues_of(text))


def test_a_weight_shift_the_gateway_would_reject_is_caught_before_the_drill() -> None:
    text = BASE + "faults:\n  - {kind: shift-weights, route: shop, weights: {shop: 0}, at: 1s}\n"
    found = issues_of(text)
    assert any("faults[0]" in i and "would be rejected" in i for i in found), found


def test_a_weight_shift_names_a_route_of_the_gateway_config() -> None:
    text = BASE + "faults:\n  - {kind: shift-weights, route: nope, weights: {shop: 2}, at: 1s}\n"
    assert any("faults[0].route: no route 'nope'" in i for i in issues_of(text))


def test_scaling_a_drill_moves_its_timeline_and_share_stretches() -> None:
    loaded = load_scenario(ROOT / "config" / "drills" / "canary-rollback.yaml")
    short = scaled(loaded.scenario, 4.0)
    assert short.traffic.duration_s == 4.0
    shift = next(f for f in short.faults if f.kind is FaultKind.SHIFT_WEIGHTS)
    assert (shift.at_s, shift.until_s) == (0.75, 1.75)
    timed = [b for b in short.expect.shares if b.from_s is not None]
    assert (timed[0].from_s, timed[0].to_s) == (1.0, 1.75)


def test_drill_check_prints_every_issue_at_its_position_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from portway.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("duration: 4s", "duration: 4s, rate: -1"))
    assert main(["drill", "--check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:9:" in err and "traffic.rate" in err
    good = ROOT / "config" / "drills" / "zone-loss.yaml"
    assert main(["drill", "--check", str(good)]) == 0
