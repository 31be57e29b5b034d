"""The generic cell rate algorithm (GCRA): a token bucket kept as one time per key.

A token bucket of `requests + burst` tokens refilled at `requests / per`
tokens a second is the same thing as GCRA: each key keeps only its
*theoretical arrival time* (TAT), the moment its bucket will be full again.
A request at `now` is allowed when `max(TAT, now) + interval - now <=
capacity * interval` and then moves TAT forward by one `interval`; otherwise
it is refused and may retry after the excess. A TAT in the past is a full
bucket, the same as no TAT at all. Pure: `now` is given (the event loop's
clock), and where the TATs live is the caller's business
(`ratelimit.BucketStore`: a dict; `shared_buckets.SharedBucketStore`: shared
memory).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.resilience import RateLimit

_SLACK_S = 1e-9
"""Float rounding that must not refuse the last token of a bucket."""


@dataclass(frozen=True, slots=True)
class Gcra:
    """One limit's arithmetic: the spacing of requests and the bucket's depth in time."""

    interval_s: float
    """Seconds one token takes to refill (`per / requests`)."""
    window_s: float
    """The bucket's depth in time: `capacity * interval_s`."""

    @classmethod
    def of(cls, limit: RateLimit) -> Gcra:
        interval_s = limit.per_s / limit.requests
        return cls(interval_s, (limit.requests + limit.burst) * interval_s)

    def admit(self, tat: float, now: float) -> float:
        """The key's new TAT when one more request at `now` is allowed, else minus the
        seconds until it would be. `tat` is the key's TAT (0.0, or any past time, when it
        has none); `now` must be positive (a monotonic clock), so an allowed answer is."""
        new_tat = (tat if tat > now else now) + self.interval_s
        excess = new_tat - now - self.window_s
        return -excess if excess > _SLACK_S else new_tat

    def remaining(self, tat: float, now: float) -> int:
        """Tokens left at `now` in a bucket whose TAT is `tat`."""
        debt = tat - now if tat > now else 0.0
        return max(0, int((self.window_s - debt) / self.interval_s + _SLACK_S))
