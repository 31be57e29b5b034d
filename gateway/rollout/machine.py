"""A progressive rollout as a pure state machine: values in, the next status out.

Theory of operation. A rollout belongs to one routing rule that has a stable
side (its `backendRefs`) and a canary backend, which may live in another
cluster than the stable one. Its *status* says how much of the rule's traffic
the canary takes now (`weight`, a percent) and why. The status moves only
along the configured steps:

    pending --start--> progressing(0) --pass--> progressing(1) ... --pass--> promoted (100%)
                            |  ^                     |
                   pause    v  | resume             fail
                          paused                     v
                                               rolled_back (0%)

* `tick(status, spec, now, window)` is the clock's and the measurements'
  input. A pending rollout starts at its first step. A progressing step is
  judged on the canary's `Window` (requests, errors, p99 since the step began
  or since this driver began watching it, whichever is later):
  - FAIL as soon as the window holds at least `min_requests` requests and the
    error rate or the p99 is over its limit: failures are acted on at once,
    not at the end of the hold;
  - PASS once the step has been held `hold_s` and the window holds at least
    `min_requests` requests and is under the limits; a step with too little
    traffic is held longer, never passed blind;
  - WAIT otherwise (also when there is no window yet).
  PASS moves to the next step, or past the last one to promoted (100%). FAIL
  rolls back to 0%, or with `rollback_on_failure` off pauses at the current
  weight for a person to decide.
* `command(status, spec, cmd, now)` is an operator's input: pause, resume,
  promote, abort. A command that makes no sense in a phase (pausing a
  promoted rollout) raises `CommandRefused`; one that is already satisfied
  (pausing a paused one) leaves the status as it is.

Both rule sets are data (`TICK_RULES`, `COMMAND_RULES`) mapping (phase,
input) to a `Move`; `_apply` is the only place a move becomes a status. So
the weights a status can carry are exactly 0, 100 and the steps' percents.
Nothing here reads a clock, a socket or the registry: the runner
(`gateway.rollout.runner`) feeds wall-clock time and measurements in and
stores what comes out.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final


class Phase(enum.Enum):
    """Where a rollout is; `weight` is the canary's share in each (see module docstring)."""

    PENDING = "pending"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"


class Command(enum.Enum):
    """What an operator may ask (`portway rollout VERB`, `POST /rollouts/<name>/<verb>`)."""

    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ABORT = "abort"


class Verdict(enum.Enum):
    """The judgement of a step's window."""

    WAIT = "wait"
    PASS = "pass"
    FAIL = "fail"


class Move(enum.Enum):
    """What a rule does to a status; `_apply` turns it into the next status."""

    STAY = "stay"
    FIRST_STEP = "first_step"
    NEXT_STEP = "next_step"
    SAME_STEP = "same_step"
    HOLD = "hold"
    PROMOTE = "promote"
    ROLL_BACK = "roll_back"
    ON_FAILURE = "on_failure"
    """ROLL_BACK, or HOLD when the spec's `rollback_on_failure` is off."""


class CommandRefused(Exception):
    """An operator command that the rollout's phase does not allow."""


@dataclass(frozen=True, slots=True)
class Step:
    """Send `percent` of the rule's traffic to the canary for at least `hold_s`."""

    percent: float
    hold_s: float


@dataclass(frozen=True, slots=True)
class RolloutSpec:
    """A rollout as configured; `digest` names this exact spec (a changed spec restarts)."""

    steps: tuple[Step, ...]
    max_error_rate: float
    """Percent of the canary's requests that may fail (5xx) in a window."""
    max_p99_s: float | None
    """The canary's p99 latency limit in a window; None: latency is not judged."""
    min_requests: int
    """Requests a window needs before it is judged at all."""
    rollback_on_failure: bool
    digest: str = ""


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    """What the registry stores for a rollout: every replica applies `weight`."""

    phase: Phase
    step: int
    """Index of the step in force; -1 before the first, len(steps) once promoted."""
    weight: float
    """Percent of the rule's traffic the canary takes."""
    since: float
    """Wall-clock time the step or phase began."""
    reason: str = ""
    spec: str = ""
    """Digest of the spec this status belongs to."""


@dataclass(frozen=True, slots=True)
class Window:
    """The canary's measurements from `started_at` to now."""

    started_at: float
    requests: int
    errors: int
    p99_s: float | None = None

    @property
    def error_rate(self) -> float:
        """Failed requests in percent (0 when there were none)."""
        return 100.0 * self.errors / self.requests if self.requests else 0.0


TICK_RULES: Final[Mapping[tuple[Phase, Verdict], Move]] = {
    (Phase.PENDING, Verdict.WAIT): Move.FIRST_STEP,
    (Phase.PENDING, Verdict.PASS): Move.FIRST_STEP,
    (Phase.PENDING, Verdict.FAIL): Move.FIRST_STEP,
    (Phase.PROGRESSING, Verdict.WAIT): Move.STAY,
    (Phase.PROGRESSING, Verdict.PASS): Move.NEXT_STEP,
    (Phase.PROGRESSING, Verdict.FAIL): Move.ON_FAILURE,
    (Phase.PAUSED, Verdict.WAIT): Move.STAY,
    (Phase.PAUSED, Verdict.PASS): Move.STAY,
    (Phase.PAUSED, Verdict.FAIL): Move.STAY,
    (Phase.PROMOTED, Verdict.WAIT): Move.STAY,
    (Phase.PROMOTED, Verdict.PASS): Move.STAY,
    (Phase.PROMOTED, Verdict.FAIL): Move.STAY,
    (Phase.ROLLED_BACK, Verdict.WAIT): Move.STAY,
    (Phase.ROLLED_BACK, Verdict.PASS): Move.STAY,
    (Phase.ROLLED_BACK, Verdict.FAIL): Move.STAY,
}
"""(phase, verdict of the window) → move, for every pair."""

COMMAND_RULES: Final[Mapping[tuple[Phase, Command], Move]] = {
    (Phase.PENDING, Command.PAUSE): Move.HOLD,
    (Phase.PENDING, Command.RESUME): Move.STAY,
    (Phase.PENDING, Command.PROMOTE): Move.PROMOTE,
    (Phase.PENDING, Command.ABORT): Move.ROLL_BACK,
    (Phase.PROGRESSING, Command.PAUSE): Move.HOLD,
    (Phase.PROGRESSING, Command.RESUME): Move.STAY,
    (Phase.PROGRESSING, Command.PROMOTE): Move.PROMOTE,
    (Phase.PROGRESSING, Command.ABORT): Move.ROLL_BACK,
    (Phase.PAUSED, Command.PAUSE): Move.STAY,
    (Phase.PAUSED, Command.RESUME): Move.SAME_STEP,
    (Phase.PAUSED, Command.PROMOTE): Move.PROMOTE,
    (Phase.PAUSED, Command.ABORT): Move.ROLL_BACK,
    (Phase.PROMOTED, Command.PROMOTE): Move.STAY,
    (Phase.PROMOTED, Command.ABORT): Move.ROLL_BACK,
    (Phase.ROLLED_BACK, Command.RESUME): Move.FIRST_STEP,
    (Phase.ROLLED_BACK, Command.PROMOTE): Move.PROMOTE,
    (Phase.ROLLED_BACK, Command.ABORT): Move.STAY,
}
"""(phase, command) → move; a pair missing here is refused. Resuming a rolled-back
rollout runs it again from the first step; aborting a promoted one sends every
request back to the stable side."""


def initial(spec: RolloutSpec) -> RolloutStatus:
    """The status of a rollout nobody has started (no record, or one of another spec)."""
    return RolloutStatus(Phase.PENDING, -1, 0.0, 0.0, "waiting for a driver", spec.digest)


def judge(spec: RolloutSpec, status: RolloutStatus, now: float, window: Window | None) -> Verdict:
    """The verdict on a progressing step's window (see the module docstring)."""
    if window is None or window.requests < spec.min_requests:
        return Verdict.WAIT
    if failure(spec, window):
        return Verdict.FAIL
    hold_s = spec.steps[status.step].hold_s if 0 <= status.step < len(spec.steps) else 0.0
    if now >= max(status.since, window.started_at) + hold_s:
        return Verdict.PASS
    return Verdict.WAIT


def failure(spec: RolloutSpec, window: Window) -> str:
    """Why `window` breaks the spec's limits, or "" when it does not."""
    if window.error_rate > spec.max_error_rate:
        return (
            f"error rate {window.error_rate:.1f}% > {spec.max_error_rate:g}% "
            f"over {window.requests} requests"
        )
    if spec.max_p99_s is not None and window.p99_s is not None and window.p99_s > spec.max_p99_s:
        return f"p99 {window.p99_s * 1000:.0f} ms > {spec.max_p99_s * 1000:.0f} ms"
    return ""


def tick(
    status: RolloutStatus, spec: RolloutSpec, now: float, window: Window | None
) -> RolloutStatus:
    """The next status given the time and the canary's window (`TICK_RULES`)."""
    verdict = Verdict.WAIT
    if status.phase is Phase.PROGRESSING:
        verdict = judge(spec, status, now, window)
    move = TICK_RULES[(status.phase, verdict)]
    reason = ""
    if verdict is Verdict.FAIL and window is not None:
        reason = f"{failure(spec, window)} at step {status.step + 1} ({status.weight:g}%)"
    return _apply(move, status, spec, now, reason)


def command(status: RolloutStatus, spec: RolloutSpec, cmd: Command, now: float) -> RolloutStatus:
    """The status after an operator's command (`COMMAND_RULES`); raises `CommandRefused`."""
    move = COMMAND_RULES.get((status.phase, cmd))
    if move is None:
        raise CommandRefused(f"cannot {cmd.value} a rollout that is {status.phase.value}")
    return _apply(move, status, spec, now, f"{cmd.value} by operator")


def _apply(
    move: Move, status: RolloutStatus, spec: RolloutSpec, now: float, reason: str
) -> RolloutStatus:
    steps, digest = spec.steps, spec.digest
    if move is Move.ON_FAILURE:
        move = Move.ROLL_BACK if spec.rollback_on_failure else Move.HOLD
        reason = ("rolled back: " if spec.rollback_on_failure else "paused: ") + reason
    if move is Move.STAY:
        return status
    if move is Move.FIRST_STEP:
        return _progressing(0, spec, now, reason)
    if move is Move.NEXT_STEP:
        if status.step + 1 < len(steps):
            return _progressing(status.step + 1, spec, now, reason)
        return RolloutStatus(
            Phase.PROMOTED, len(steps), 100.0, now, reason or "promoted: every step passed", digest
        )
    if move is Move.SAME_STEP:
        return _progressing(max(status.step, 0), spec, now, reason)
    if move is Move.HOLD:
        return replace(status, phase=Phase.PAUSED, since=now, reason=reason, spec=digest)
    if move is Move.PROMOTE:
        return RolloutStatus(Phase.PROMOTED, len(steps), 100.0, now, reason, digest)
    return RolloutStatus(Phase.ROLLED_BACK, status.step, 0.0, now, reason, digest)


def _progressing(step: int, spec: RolloutSpec, now: float, reason: str) -> RolloutStatus:
    percent = spec.steps[step].percent
    why = reason or f"step {step + 1} of {len(spec.steps)}: {percent:g}% to the canary"
    return RolloutStatus(Phase.PROGRESSING, step, percent, now, why, spec.digest)
