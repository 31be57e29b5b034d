"""The loop's DeadlineWatch: the clock request deadlines and durations are read on."""

from __future__ import annotations

import uvloop

from gateway.http.deadline_watch import deadline_watch


def smallest_step_s(now: object, samples: int = 200) -> float:
    """The smallest nonzero step `now()` takes, over `samples` steps."""
    assert callable(now)
    steps = []
    last = now()
    while len(steps) < samples:
        t = now()
        if t != last:
            steps.append(t - last)
            last = t
    return min(steps)


def test_request_durations_resolve_below_a_millisecond_on_uvloop() -> None:
    """uvloop's `loop.time()` moves in whole milliseconds; request durations and the
    histograms' sub-millisecond buckets need the watch's clock to move in microseconds."""
    loop = uvloop.new_event_loop()
    try:
        assert smallest_step_s(loop.time, samples=3) >= 0.001 - 1e-9  # why: whole ms
        assert smallest_step_s(deadline_watch(loop).now) < 0.0001
    finally:
        loop.close()
