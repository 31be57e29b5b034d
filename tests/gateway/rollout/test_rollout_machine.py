"""The rollout state machine with plain values: time, windows and commands in, statuses out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.rollout.machine import (
    COMMAND_RULES,
    TICK_RULES,
    Command,
    CommandRefused,
    Phase,
    RolloutSpec,
    RolloutStatus,
    Step,
    Verdict,
    Window,
    command,
    initial,
    judge,
    tick,
)

SPEC = RolloutSpec(
    steps=(Step(10.0, 30.0), Step(50.0, 60.0), Step(100.0, 30.0)),
    max_error_rate=1.0,
    max_p99_s=0.5,
    min_requests=20,
    rollback_on_failure=True,
    digest="d1",
)


def healthy(started_at: float, requests: int = 100) -> Window:
    return Window(started_at, requests, 0, 0.05)


def started(now: float = 1000.0) -> RolloutStatus:
    return tick(initial(SPEC), SPEC, now, None)


def test_every_phase_and_verdict_has_a_tick_rule() -> None:
    assert set(TICK_RULES) == {(p, v) for p in Phase for v in Verdict}


def test_a_pending_rollout_starts_at_its_first_step() -> None:
    status = started(1000.0)
    assert status == RolloutStatus(
        Phase.PROGRESSING, 0, 10.0, 1000.0, "step 1 of 3: 10% to the canary", "d1"
    )


def test_a_healthy_step_passes_only_after_its_hold() -> None:
    status = started(1000.0)
    assert tick(status, SPEC, 1029.9, healthy(1000.0)) == status
    after = tick(status, SPEC, 1030.0, healthy(1000.0))
    assert (after.phase, after.step, after.weight, after.since) == (
        Phase.PROGRESSING,
        1,
        50.0,
        1030.0,
    )


def test_the_hold_counts_from_when_the_driver_began_watching() -> None:
    status = started(1000.0)
    taken_over = healthy(1020.0)  # a new driver's first sample came 20 s into the step
    assert tick(status, SPEC, 1035.0, taken_over) == status
    assert tick(status, SPEC, 1050.0, taken_over).step == 1


def test_a_quiet_step_is_held_until_it_has_enough_requests() -> None:
    status = started(1000.0)
    assert tick(status, SPEC, 5000.0, healthy(1000.0, requests=19)) == status
    assert tick(status, SPEC, 5000.0, healthy(1000.0, requests=20)).step == 1
    assert tick(status, SPEC, 5000.0, None) == status


def test_passing_the_last_step_promotes_to_all_traffic() -> None:
    status = RolloutStatus(Phase.PROGRESSING, 2, 100.0, 1000.0, "", "d1")
    after = tick(status, SPEC, 1030.0, healthy(1000.0))
    assert (after.phase, after.weight, after.step) == (Phase.PROMOTED, 100.0, 3)
    assert tick(after, SPEC, 9999.0, Window(1000.0, 100, 100, 9.0)) == after


def test_errors_over_the_limit_roll_back_at_once_with_the_reason() -> None:
    status = tick(started(1000.0), SPEC, 1030.0, healthy(1000.0))
    failing = Window(1030.0, 40, 5, 0.05)
    after = tick(status, SPEC, 1031.0, failing)  # long before the hold ends
    assert (after.phase, after.weight, after.step) == (Phase.ROLLED_BACK, 0.0, 1)
    assert after.reason == "rolled back: error rate 12.5% > 1% over 40 requests at step 2 (50%)"


def test_a_slow_canary_is_rolled_back_on_its_p99() -> None:
    after = tick(started(1000.0), SPEC, 1001.0, Window(1000.0, 50, 0, 0.8))
    assert after.phase is Phase.ROLLED_BACK
    assert "p99 800 ms > 500 ms" in after.reason


def test_without_a_latency_limit_latency_is_not_judged() -> None:
    spec = RolloutSpec(SPEC.steps, 1.0, None, 20, True, "d2")
    status = tick(initial(spec), spec, 1000.0, None)
    assert tick(status, spec, 1030.0, Window(1000.0, 50, 0, 9.0)).step == 1


def test_with_rollback_on_failure_off_a_failure_pauses_at_the_current_weight() -> None:
    spec = RolloutSpec(SPEC.steps, 1.0, 0.5, 20, False, "d3")
    status = tick(tick(initial(spec), spec, 1000.0, None), spec, 1030.0, healthy(1000.0))
    after = tick(status, spec, 1031.0, Window(1030.0, 40, 40, 0.01))
    assert (after.phase, after.weight, after.step) == (Phase.PAUSED, 50.0, 1)
    assert after.reason.startswith("paused: error rate 100.0% > 1%")


def test_a_window_with_too_few_requests_is_never_judged_a_failure() -> None:
    status = started(1000.0)
    assert judge(SPEC, status, 1001.0, Window(1000.0, 19, 19, 9.0)) is Verdict.WAIT


def test_pause_holds_the_weight_and_resume_restarts_the_step_window() -> None:
    status = tick(started(1000.0), SPEC, 1030.0, healthy(1000.0))
    paused = command(status, SPEC, Command.PAUSE, 1040.0)
    assert (paused.phase, paused.weight, paused.step) == (Phase.PAUSED, 50.0, 1)
    assert tick(paused, SPEC, 9999.0, healthy(1000.0)) == paused
    resumed = command(paused, SPEC, Command.RESUME, 1100.0)
    assert (resumed.phase, resumed.weight, resumed.step, resumed.since) == (
        Phase.PROGRESSING,
        50.0,
        1,
        1100.0,
    )


def test_promote_and_abort_jump_to_the_ends() -> None:
    status = started(1000.0)
    promoted = command(status, SPEC, Command.PROMOTE, 1001.0)
    assert (promoted.phase, promoted.weight) == (Phase.PROMOTED, 100.0)
    aborted = command(promoted, SPEC, Command.ABORT, 1002.0)
    assert (aborted.phase, aborted.weight, aborted.reason) == (
        Phase.ROLLED_BACK,
        0.0,
        "abort by operator",
    )


def test_resuming_a_rolled_back_rollout_runs_it_again_from_the_first_step() -> None:
    aborted = command(started(1000.0), SPEC, Command.ABORT, 1001.0)
    again = command(aborted, SPEC, Command.RESUME, 1002.0)
    assert (again.phase, again.step, again.weight) == (Phase.PROGRESSING, 0, 10.0)


def test_commands_that_make_no_sense_are_refused_and_satisfied_ones_change_nothing() -> None:
    promoted = command(started(), SPEC, Command.PROMOTE, 1001.0)
    with pytest.raises(CommandRefused, match="cannot pause a rollout that is promoted"):
        command(promoted, SPEC, Command.PAUSE, 1002.0)
    with pytest.raises(CommandRefused):
        command(promoted, SPEC, Command.RESUME, 1002.0)
    assert command(promoted, SPEC, Command.PROMOTE, 1002.0) is promoted
    paused = command(started(), SPEC, Command.PAUSE, 1001.0)
    assert command(paused, SPEC, Command.PAUSE, 1002.0) is paused


def test_a_paused_pending_rollout_resumes_at_its_first_step() -> None:
    paused = command(initial(SPEC), SPEC, Command.PAUSE, 1000.0)
    assert (paused.phase, paused.weight) == (Phase.PAUSED, 0.0)
    assert command(paused, SPEC, Command.RESUME, 1001.0).weight == 10.0


# ---- properties ---------------------------------------------------------------


@st.composite
def specs(draw: st.DrawFn) -> RolloutSpec:
    percents = draw(st.lists(st.integers(1, 100), min_size=1, max_size=5, unique=True).map(sorted))
    holds = draw(
        st.lists(
            st.sampled_from([0.0, 0.5, 1.0, 5.0]), min_size=len(percents), max_size=len(percents)
        )
    )
    return RolloutSpec(
        steps=tuple(Step(float(p), h) for p, h in zip(percents, holds, strict=True)),
        max_error_rate=draw(st.sampled_from([0.0, 1.0, 5.0])),
        max_p99_s=draw(st.sampled_from([None, 0.1, 1.0])),
        min_requests=draw(st.integers(1, 30)),
        rollback_on_failure=draw(st.booleans()),
        digest="p",
    )


events = st.one_of(
    st.tuples(
        st.just("tick"),
        st.floats(0.0, 3.0),
        st.integers(0, 60),
        st.integers(0, 60),
        st.sampled_from([None, 0.01, 0.5, 2.0]),
    ),
    st.tuples(
        st.just("command"), st.sampled_from(list(Command)), st.just(0), st.just(0), st.none()
    ),
)


@settings(max_examples=300, deadline=None)
@given(spec=specs(), script=st.lists(events, max_size=40))
def test_weights_only_ever_take_configured_values(
    spec: RolloutSpec, script: list[tuple[object, ...]]
) -> None:
    allowed = {0.0, 100.0} | {s.percent for s in spec.steps}
    status, now = initial(spec), 0.0
    for kind, a, requests, errors, p99 in script:
        if kind == "tick":
            assert isinstance(a, float) and isinstance(requests, int) and isinstance(errors, int)
            now += a
            window = Window(status.since, requests, min(errors, requests), p99)
            new = tick(status, spec, now, window)
            if status.phase is Phase.PROGRESSING and new.phase is Phase.PROGRESSING:
                assert new.step in (status.step, status.step + 1)
                assert new.weight >= status.weight
        else:
            assert isinstance(a, Command)
            try:
                new = command(status, spec, a, now)
            except CommandRefused:
                assert (status.phase, a) not in COMMAND_RULES
                continue
        assert new.weight in allowed
        if new.phase is Phase.PROGRESSING or new.phase is Phase.PAUSED:
            assert new.weight == (spec.steps[new.step].percent if new.step >= 0 else 0.0)
        status = new


@settings(max_examples=200, deadline=None)
@given(spec=specs(), step=st.integers(0, 4), requests=st.integers(1, 500), data=st.data())
def test_a_failing_judgement_with_rollback_always_ends_at_zero(
    spec: RolloutSpec, step: int, requests: int, data: st.DataObject
) -> None:
    step = min(step, len(spec.steps) - 1)
    status = RolloutStatus(Phase.PROGRESSING, step, spec.steps[step].percent, 0.0, "", "p")
    requests = max(requests, spec.min_requests)
    errors = data.draw(st.integers(0, requests))
    p99 = data.draw(st.sampled_from([0.0, 0.05, 3.0]))
    window = Window(0.0, requests, errors, p99)
    new = tick(status, spec, data.draw(st.floats(0.0, 100.0)), window)
    if judge(spec, status, 0.0, window) is Verdict.FAIL:
        if spec.rollback_on_failure:
            assert (new.phase, new.weight) == (Phase.ROLLED_BACK, 0.0)
        else:
            assert (new.phase, new.weight) == (Phase.PAUSED, status.weight)


@settings(max_examples=100, deadline=None)
@given(spec=specs(), tick_s=st.sampled_from([0.1, 0.25, 1.0]))
def test_healthy_windows_promote_after_the_sum_of_the_holds(
    spec: RolloutSpec, tick_s: float
) -> None:
    status, now = tick(initial(spec), spec, 0.0, None), 0.0
    seen = [status.weight]
    while status.phase is Phase.PROGRESSING:
        now = round(now + tick_s, 6)
        window = Window(status.since, spec.min_requests, 0, 0.0)
        status = tick(status, spec, now, window)
        if status.weight != seen[-1]:
            seen.append(status.weight)
        assert now <= sum(s.hold_s for s in spec.steps) + tick_s * (len(spec.steps) + 1)
    assert status.phase is Phase.PROMOTED
    last = spec.steps[-1].percent
    assert seen == [s.percent for s in spec.steps] + ([100.0] if last != 100.0 else [])
