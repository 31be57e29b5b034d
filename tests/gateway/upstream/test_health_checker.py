"""Active health checking as a state machine: schedule, thresholds, spread, verdicts."""

from __future__ import annotations

from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.model import HealthCheck
from gateway.routing.endpoints import Endpoint
from gateway.upstream.health import (
    Health,
    HealthChecker,
    ProbeKind,
    ProbeSpec,
    judge_http,
    next_interval_s,
    probe_spec,
)

CHECK = HealthCheck(interval_s=2.0, healthy_threshold=2, unhealthy_threshold=3, jitter_percent=0)
SPEC = ProbeSpec(ProbeKind.TCP, "127.0.0.1", 30000)


def checker(n: int = 1, check: HealthCheck = CHECK) -> HealthChecker:
    hc = HealthChecker(Random(1))
    hc.sync([(f"k{i}", "b", SPEC, check) for i in range(n)], 0.0)
    return hc


def test_the_first_result_decides_then_thresholds_apply() -> None:
    hc = checker()
    assert hc.result("k0", True, "ok", 1.0) is not None
    assert hc.targets["k0"].status is Health.HEALTHY
    assert hc.result("k0", False, "refused", 2.0) is None
    assert hc.result("k0", False, "refused", 3.0) is None
    change = hc.result("k0", False, "refused", 4.0)
    assert change is not None and change.new is Health.UNHEALTHY and change.detail == "refused"
    assert hc.result("k0", True, "ok", 5.0) is None
    back = hc.result("k0", True, "ok", 6.0)
    assert back is not None and back.new is Health.HEALTHY


def test_a_pass_breaks_a_failure_run() -> None:
    hc = checker()
    hc.result("k0", True, "ok", 0.0)
    for t in range(30):
        hc.result("k0", False, "x", t)
        hc.result("k0", False, "x", t)
        hc.result("k0", True, "ok", t)
    assert hc.targets["k0"].status is Health.HEALTHY


def test_a_new_endpoint_that_fails_its_first_probe_is_unhealthy_at_once() -> None:
    hc = checker()
    change = hc.result("k0", False, "connect refused", 0.5)
    assert change is not None and change.new is Health.UNHEALTHY


def test_probes_are_spread_over_the_first_interval_and_not_synchronized() -> None:
    hc = checker(1000, HealthCheck(interval_s=5.0, jitter_percent=10))
    starts = sorted(t.due_at for t in hc.targets.values())
    assert starts[0] >= 0.0 and starts[-1] <= 5.0
    per_second = [sum(1 for s in starts if i <= s < i + 1) for i in range(5)]
    assert all(150 <= n <= 250 for n in per_second), per_second
    now = 0.0
    for _ in range(100):
        now += 0.1
        for t in hc.due(now):
            hc.result(t.key, True, "ok", now)
    gaps = sorted(t.due_at for t in hc.targets.values())
    assert len({round(g, 2) for g in gaps}) > 300  # jitter keeps them apart


def test_due_hands_out_each_probe_once_until_its_result() -> None:
    hc = checker(10)
    first = hc.due(10.0)
    assert len(first) == 10
    assert hc.due(20.0) == []
    for t in first:
        hc.result(t.key, True, "ok", 20.0)
    assert hc.due(21.0) == []
    assert len(hc.due(22.0)) == 10


def test_an_unhealthy_endpoint_is_probed_faster() -> None:
    rng = Random(0)
    assert next_interval_s(CHECK, Health.HEALTHY, rng) == 2.0
    assert next_interval_s(CHECK, Health.UNHEALTHY, rng) == 1.0
    fast = HealthCheck(interval_s=10.0, unhealthy_interval_s=0.25, jitter_percent=0)
    assert next_interval_s(fast, Health.UNHEALTHY, rng) == 0.25


def test_sync_keeps_status_and_drops_removed_targets() -> None:
    hc = checker(2)
    hc.result("k0", False, "x", 0.0)
    hc.sync([("k0", "b", SPEC, CHECK)], 1.0)
    assert hc.targets["k0"].status is Health.UNHEALTHY and "k1" not in hc.targets
    assert hc.unhealthy() == ["k0"]


def test_probe_specs_http_tcp_and_kube_proxy() -> None:
    ep = Endpoint("127.0.0.5", 30080, "c1", health_check_port=32000)
    kp = probe_spec(ep, HealthCheck())
    assert (kp.kind, kp.port) == (ProbeKind.KUBE_PROXY, 32000)
    http = probe_spec(ep, HealthCheck(use_health_check_node_port=False, path="/ready", host="api"))
    assert (http.kind, http.port, http.path, http.host) == (ProbeKind.HTTP, 30080, "/ready", "api")
    tcp = probe_spec(Endpoint("::1", 30080, "c1"), HealthCheck(protocol="tcp", port=9000))
    assert (tcp.kind, tcp.port) == (ProbeKind.TCP, 9000)


def test_kube_proxy_healthz_needs_local_endpoints() -> None:
    spec = ProbeSpec(ProbeKind.KUBE_PROXY, "127.0.0.1", 32000)
    assert judge_http(spec, 200, b'{"localEndpoints": 2}')[0]
    assert not judge_http(spec, 200, b'{"localEndpoints": 0}')[0]
    assert not judge_http(spec, 503, b'{"localEndpoints": 0}')[0]
    assert not judge_http(spec, 200, b"garbage")[0]
    http = ProbeSpec(ProbeKind.HTTP, "127.0.0.1", 1, expected=(200, 204))
    assert judge_http(http, 204, b"")[0] and not judge_http(http, 500, b"")[0]


@settings(max_examples=200, deadline=None)
@given(
    healthy=st.integers(1, 5),
    unhealthy=st.integers(1, 5),
    results=st.lists(st.booleans(), max_size=60),
)
def test_status_changes_only_after_threshold_runs(
    healthy: int, unhealthy: int, results: list[bool]
) -> None:
    check = HealthCheck(healthy_threshold=healthy, unhealthy_threshold=unhealthy)
    hc = checker(1, check)
    run: list[bool] = []
    for i, passed in enumerate(results):
        before = hc.targets["k0"].status
        run = [*run, passed] if run and run[-1] == passed else [passed]
        change = hc.result("k0", passed, "", float(i))
        after = hc.targets["k0"].status
        if change is not None:
            assert (change.old, change.new) == (before, after)
            if before is Health.HEALTHY:
                assert not passed and len(run) >= unhealthy
            if before is Health.UNHEALTHY:
                assert passed and len(run) >= healthy
        else:
            assert before is after


def test_expected_statuses_decide_what_passes() -> None:
    check = HealthCheck(use_health_check_node_port=False, expected_statuses=(204, 301))
    spec = probe_spec(Endpoint("127.0.0.5", 30080, "c1"), check)
    assert judge_http(spec, 204, b"")[0] and judge_http(spec, 301, b"")[0]
    assert not judge_http(spec, 200, b"")[0]


def test_a_failed_probe_of_a_healthy_endpoint_brings_the_next_probe_forward() -> None:
    hc = checker()
    hc.result("k0", True, "ok", 0.0)
    assert hc.targets["k0"].due_at == 2.0  # healthy: every interval
    hc.result("k0", False, "timeout", 2.0)
    assert hc.targets["k0"].status is Health.HEALTHY
    assert hc.targets["k0"].due_at == 3.0  # one failure: confirm within the fast interval


def test_an_alive_probe_passes_on_any_answer() -> None:
    alive = ProbeSpec(ProbeKind.HTTP_ALIVE, "127.0.0.1", 1, expected=())
    assert judge_http(alive, 503, b"")[0] and judge_http(alive, 404, b"")[0]
