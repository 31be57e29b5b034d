"""How a rollout's status and the driver lease are stored in the registry.

Keys (relative to the registry's root, beside `portway/v1/services/`):

    portway/v1/rollouts/<route>/<rule>     one rollout's `RolloutStatus`
    portway/v1/leases/rollout-driver       which gateway replica drives (`DriverLease`)

Values are JSON objects versioned `"v": 1`. They are written with
compare-and-set (`Registry.write_state`), so an operator's command and the
driver's step never overwrite each other: the loser reads again and redoes
its decision. A value that does not decode is reported and treated as
absent, the way a bad service record is skipped.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from gateway.rollout.lease import DriverLease
from gateway.rollout.machine import Phase, RolloutStatus

ROLLOUTS_PREFIX: Final = "portway/v1/rollouts/"
DRIVER_KEY: Final = "portway/v1/leases/rollout-driver"
VERSION: Final = 1


class RolloutRecordError(ValueError):
    """A stored value that is not a rollout record of this version."""


def rollout_key(name: str) -> str:
    """The key of rollout `name` (`<route>/<rule>`)."""
    return ROLLOUTS_PREFIX + name


def name_of_key(key: str) -> str:
    """The rollout name a key under `ROLLOUTS_PREFIX` stands for."""
    return key[len(ROLLOUTS_PREFIX) :] if key.startswith(ROLLOUTS_PREFIX) else key


def encode_status(status: RolloutStatus) -> str:
    return json.dumps(
        {
            "v": VERSION,
            "phase": status.phase.value,
            "step": status.step,
            "weight": status.weight,
            "since": status.since,
            "reason": status.reason,
            "spec": status.spec,
        },
        sort_keys=True,
    )


def decode_status(text: str) -> RolloutStatus:
    """The status in `text`; raises `RolloutRecordError` saying what is wrong."""
    raw = _object(text)
    try:
        status = RolloutStatus(
            phase=Phase(raw["phase"]),
            step=int(raw["step"]),
            weight=float(raw["weight"]),
            since=float(raw["since"]),
            reason=str(raw.get("reason", "")),
            spec=str(raw.get("spec", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RolloutRecordError(f"not a rollout status: {exc}") from None
    if not 0.0 <= status.weight <= 100.0 or not math.isfinite(status.since):
        raise RolloutRecordError(f"weight {status.weight} is not a percent")
    return status


def encode_lease(lease: DriverLease) -> str:
    return json.dumps({"v": VERSION, "holder": lease.holder, "until": lease.until}, sort_keys=True)


def decode_lease(text: str) -> DriverLease:
    raw = _object(text)
    try:
        return DriverLease(str(raw["holder"]), float(raw["until"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RolloutRecordError(f"not a driver lease: {exc}") from None


def _object(text: str) -> dict[str, Any]:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise RolloutRecordError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("v") != VERSION:
        raise RolloutRecordError(f'not a version {VERSION} record (no "v": {VERSION})')
    return raw
