"""Outlier detection as a state machine: plain values in, ejections out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.model import LoadBalancer, Locality, OutlierDetection
from gateway.routing.backend import CompiledBackend
from gateway.routing.endpoints import Endpoint, EndpointState
from gateway.upstream.outlier import (
    DEFAULT,
    Outcome,
    OutlierDetector,
    ejection_time_s,
    may_eject,
    status_outcome,
)


def backend(n: int, od: OutlierDetection | None = None) -> CompiledBackend:
    eps = tuple(Endpoint("127.0.0.1", 30000 + i, "c1") for i in range(n))
    return CompiledBackend(
        name="b",
        endpoints=eps,
        levels=(eps,),
        level_names=("all",),
        load_balancer=LoadBalancer(),
        locality=Locality(prefer="none"),
        outlier_detection=od,
    )


def test_outlier_detection_is_on_by_default_and_faster_than_envoys() -> None:
    assert DEFAULT.enabled
    assert DEFAULT.consecutive_gateway_errors < 5
    assert DEFAULT.interval_s < 10.0
    assert DEFAULT.base_ejection_time_s < 30.0
    assert DEFAULT.max_ejection_percent > 10.0


def test_three_consecutive_gateway_failures_eject_at_once() -> None:
    b, state, det = backend(4), EndpointState(), OutlierDetector()
    key = b.endpoints[0].key
    for _ in range(2):
        assert not det.failure(b, key, Outcome.GATEWAY_FAILURE, state, 100.0)
    assert det.failure(b, key, Outcome.GATEWAY_FAILURE, state, 100.0)
    assert state.ejected[key] == 100.0 + DEFAULT.base_ejection_time_s
    (change,) = det.drain_changes()
    assert change.ejected and change.reason == "consecutive_gateway_failure"
    assert det.drain_changes() == []


def test_a_success_resets_the_runs() -> None:
    b, state, det = backend(4), EndpointState(), OutlierDetector()
    key = b.endpoints[0].key
    for _ in range(20):
        det.failure(b, key, Outcome.GATEWAY_FAILURE, state, 1.0)
        det.failure(b, key, Outcome.GATEWAY_FAILURE, state, 1.0)
        det.success(key)
    assert not state.ejected


def test_server_errors_eject_after_consecutive_5xx_and_break_the_gateway_run() -> None:
    b, state, det = backend(4), EndpointState(), OutlierDetector()
    key = b.endpoints[1].key
    det.failure(b, key, Outcome.GATEWAY_FAILURE, state, 1.0)
    det.failure(b, key, Outcome.GATEWAY_FAILURE, state, 1.0)
    det.failure(b, key, Outcome.SERVER_ERROR, state, 1.0)
    assert not state.ejected  # the 500 ended the gateway-failure run
    det.failure(b, key, Outcome.SERVER_ERROR, state, 1.0)
    assert det.failure(b, key, Outcome.SERVER_ERROR, state, 1.0)  # five 5xx in a row
    assert det.drain_changes()[0].reason == "consecutive_5xx"


def test_status_outcomes() -> None:
    assert status_outcome(200) is Outcome.SUCCESS
    assert status_outcome(404) is Outcome.SUCCESS
    assert status_outcome(500) is Outcome.SERVER_ERROR
    assert status_outcome(503) is Outcome.GATEWAY_FAILURE


def test_ejection_time_grows_per_ejection_and_decays_while_serving() -> None:
    b, state, det = backend(4), EndpointState(), OutlierDetector()
    key = b.endpoints[0].key
    now = 0.0
    lengths = []
    for _ in range(3):
        for _ in range(3):
            det.failure(b, key, Outcome.GATEWAY_FAILURE, state, now)
        lengths.append(state.ejected[key] - now)
        now = state.ejected[key]
        det.tick(state, now)
        assert key not in state.ejected
    assert lengths == [2.0, 4.0, 6.0]
    assert det.records[key].ejections == 3  # an ejection is forgotten per interval in rotation
    for _ in range(5):
        now += 1.0
        det.tick(state, now)
    assert det.records[key].ejections == 0
    assert ejection_time_s(DEFAULT, 100) == DEFAULT.max_ejection_time_s


def test_disabled_detection_never_ejects() -> None:
    b, state, det = backend(4, OutlierDetection(enabled=False)), EndpointState(), OutlierDetector()
    for _ in range(50):
        det.failure(b, b.endpoints[0].key, Outcome.GATEWAY_FAILURE, state, 0.0)
    assert not state.ejected


def test_the_last_endpoint_that_may_take_traffic_is_never_ejected() -> None:
    b, state, det = (
        backend(2, OutlierDetection(max_ejection_percent=100)),
        EndpointState(),
        OutlierDetector(),
    )
    a, c = (e.key for e in b.endpoints)
    state.set_unhealthy(c, True)
    for _ in range(10):
        det.failure(b, a, Outcome.GATEWAY_FAILURE, state, 0.0)
    assert not state.ejected
    assert not may_eject(backend(1), backend(1).endpoints[0].key, EndpointState(), 100.0)


def test_success_rate_outliers_are_ejected_at_the_sweep() -> None:
    b, state, det = backend(6), EndpointState(), OutlierDetector()
    bad = b.endpoints[5].key
    for e in b.endpoints:
        for i in range(100):
            if e.key == bad and i % 3 == 0:
                det.failure(b, e.key, Outcome.SERVER_ERROR, state, 0.5)
            else:
                det.success(e.key)
    assert not state.ejected
    det.tick(state, 1.0)
    assert list(state.ejected) == [bad]
    assert det.drain_changes()[0].reason == "success_rate"


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 12),
    percent=st.floats(0, 100),
    events=st.lists(
        st.tuples(st.integers(0, 11), st.sampled_from(list(Outcome)), st.floats(0, 0.5)),
        max_size=300,
    ),
)
def test_never_beyond_max_percent_and_always_one_left(
    n: int, percent: float, events: list[tuple[int, Outcome, float]]
) -> None:
    od = OutlierDetection(max_ejection_percent=percent, consecutive_gateway_errors=1)
    b, state, det = backend(n, od), EndpointState(), OutlierDetector()
    now = 0.0
    allowed = max(1, int(n * percent / 100.0 + 1e-9))
    for index, outcome, dt in events:
        now += dt
        det.failure(b, b.endpoints[index % n].key, outcome, state, now)
        det.tick(state, now)
        assert len(state.ejected) <= allowed
        assert any(state.available(e.key) for e in b.endpoints)


def test_an_expired_ejection_waits_for_the_readmission_probe() -> None:
    b, state = backend(4), EndpointState()
    det = OutlierDetector(probe_readmission=True)
    key = b.endpoints[0].key
    for _ in range(3):
        det.failure(b, key, Outcome.GATEWAY_FAILURE, state, 0.0)
    det.drain_changes()
    det.tick(state, 2.0)
    assert key in state.ejected and det.take_checks() == [key]
    det.tick(state, 2.1)
    assert det.take_checks() == []  # asked once, until answered
    det.readmit(key, False, state, 2.2)
    assert state.ejected[key] == 2.2 + 1.0  # out again until the next interval: probes are free
    (change,) = det.drain_changes()
    assert change.ejected and change.reason == "readmission_probe_failed"
    det.tick(state, 3.2)
    assert det.take_checks() == [key]
    det.readmit(key, True, state, 3.3)
    assert key not in state.ejected
    assert det.drain_changes()[0].reason == "readmission_probe_passed"


def test_forgotten_keys_lose_their_records() -> None:
    b, det = backend(4), OutlierDetector()
    det.success(b.endpoints[0].key)
    det.forget_keys([b.endpoints[0].key])
    assert det.records == {}


def test_the_sweep_runs_at_the_shortest_interval_of_the_followed_backends() -> None:
    fast, slow = backend(4, OutlierDetection(interval_s=0.25)), backend(4)
    det, state = OutlierDetector(), EndpointState()
    det.follow([slow, fast])
    det.tick(state, 10.0)
    assert det.next_sweep == 10.25
    det.follow([slow])
    det.tick(state, 10.25)
    assert det.next_sweep == 10.25 + DEFAULT.interval_s


def test_a_sweep_resets_only_the_endpoints_that_answered_since_the_last_one() -> None:
    b, state, det = backend(50), EndpointState(), OutlierDetector()
    for e in b.endpoints:
        det.success(e.key)  # every endpoint has a record from an earlier interval
    det.tick(state, 1.0)
    assert det.active == []
    busy, failing = b.endpoints[0].key, b.endpoints[1].key
    for _ in range(3):
        det.success(busy)
    det.failure(b, failing, Outcome.SERVER_ERROR, state, 1.5)
    det.success(failing)
    assert [id(r) for r in det.active] == [id(det.records[busy]), id(det.records[failing])]
    det.tick(state, 2.0)
    assert det.active == [] and det.records[busy].ok == 0 and det.records[failing].failed == 0


def test_an_ejection_renewed_or_let_back_meanwhile_is_judged_by_its_latest_end() -> None:
    b, state, det = backend(4), EndpointState(), OutlierDetector()
    key = b.endpoints[0].key
    for _ in range(3):
        det.failure(b, key, Outcome.GATEWAY_FAILURE, state, 0.0)
    det.clear(key, state, "health check passed")  # let back before its end (2.0)
    for _ in range(3):
        det.failure(b, key, Outcome.GATEWAY_FAILURE, state, 1.5)  # out again
    until = state.ejected[key]
    assert until > 2.0
    det.drain_changes()
    det.tick(state, 2.0)  # the first ejection's end no longer applies
    assert state.ejected[key] == until
    det.tick(state, until)
    assert key not in state.ejected
    assert [c.reason for c in det.drain_changes()] == ["ejection_expired"]
