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


class FakeConnection:
    """An idle-tracked connection that records what the watch asked of it."""

    def __init__(self, idle_at: float) -> None:
        self.idle_at = idle_at
        self.swept_idle_at = 0.0
        self.shed_listed = False
        self.sheds = 0
        self.closed = 0

    def close_idle(self) -> None:
        self.closed += 1

    def shed(self) -> bool:
        self.sheds += 1
        return True


def test_a_connection_idle_through_a_whole_period_sheds_and_a_busy_one_keeps_its_parser() -> None:
    """Shedding costs the next request a new parser (~2 us): a connection between two
    requests at one look keeps its parser; one still idle at the next look sheds it;
    one busy again is let go until it goes idle; the idle timeout is the sweep's."""
    loop = uvloop.new_event_loop()
    watch = deadline_watch(loop)
    try:
        clock = [100.0]
        watch.now = lambda: clock[0]
        idle, busy, resumed = FakeConnection(160.0), FakeConnection(160.0), FakeConnection(160.0)
        expired = FakeConnection(100.5)
        for conn in (idle, busy, resumed, expired):
            watch.track(conn)
        assert all(conn.shed_listed for conn in (idle, busy, resumed, expired))
        period = watch.shed_s
        clock[0] += period
        watch._tick()  # the first look marks them
        assert [c.sheds for c in (idle, busy, resumed)] == [0, 0, 0]
        busy.idle_at = 160.3  # a request came and went between the looks
        resumed.idle_at = 0.0  # a request is in progress
        clock[0] += period
        watch._tick()
        assert [c.sheds for c in (idle, busy, resumed, expired)] == [1, 0, 0, 1]
        assert [c.shed_listed for c in (idle, busy, resumed)] == [False, True, False]
        assert watch.went_idle == [busy]
        clock[0] += period / 2  # no look is due
        watch._tick()
        assert busy.sheds == 0
        clock[0] += period / 2
        watch._tick()
        assert busy.sheds == 1  # idle through a whole period now
        assert expired.closed == 0 and expired.sheds == 1
        clock[0] = 100.0 + watch.idle_sweep_s
        watch._tick()
        assert (expired.closed, idle.closed, busy.closed) == (1, 0, 0)
        assert not watch.went_idle and watch.next_shed == 0.0
    finally:
        if watch.handle is not None:
            watch.handle.cancel()
        loop.close()
