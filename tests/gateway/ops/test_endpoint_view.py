"""The whole gateway's view of its endpoints, merged from every worker's report."""

from __future__ import annotations

from typing import Any

from gateway.ops.endpoint_view import merged_reasons, merged_state


def report(**endpoints: Any) -> dict[str, Any]:
    return {"pid": 1, "endpoints": endpoints}


def test_an_endpoint_out_in_any_worker_is_out_and_in_flight_requests_are_summed() -> None:
    reports = [
        report(unhealthy=["a"], ejected=[], draining=[], in_flight={"a": 1, "b": 2}),
        report(unhealthy=[], ejected=["b"], draining=["c"], in_flight={"b": 3}),
        report(),  # a worker that has not judged anything yet
    ]
    state, in_flight = merged_state(reports)
    assert state.unhealthy == {"a"}
    assert set(state.ejected) == {"b"}
    assert state.draining == {"c"}
    assert not any(state.available(key) for key in "abc")
    assert state.available("d")
    assert in_flight == {"a": 1, "b": 5}


def test_the_first_worker_to_give_a_reason_is_the_one_shown() -> None:
    reports = [
        report(reasons={"a": "health check: connection refused"}),
        report(reasons={"a": "ejected: 5 consecutive gateway failures", "b": "draining"}),
    ]
    assert merged_reasons(reports) == {
        "a": "health check: connection refused",
        "b": "draining",
    }
