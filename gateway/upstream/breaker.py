"""Circuit breakers: hard caps on what one backend and one endpoint may hold at once.

Theory of operation. A breaker never waits and never guesses: a request
beyond a limit is answered 503 with `portway-error: overflow` at once (or,
for a retry, the retry is not made and the try's own failure is answered),
and the overflow is counted by backend and limit. `LIMITS` lists, as data,
where each `circuitBreaker` field is enforced:

- `maxRequests`, per backend: requests in flight to the backend (counted
  from the first try to the end of the exchange, by backend name so the
  count survives a table swap);
- `maxRetries`, per backend: requests in their retry phase at once, a hard
  cap under the retry budget (`upstream.retry_policy`), which is the policy;
- `maxConnections`, per endpoint: open upstream connections (the pool,
  `upstream.pool.EndpointPool`);
- `maxPendingRequests`, per endpoint: requests waiting for a connection
  slot; beyond it, or after waiting a connect timeout, the pool raises
  `CircuitOpen` (cause `overflow`), which a retry moves to another
  endpoint (no upstream saw the request) and is otherwise answered.

Nothing here queues: the only queue is the pool's, bounded by
`maxPendingRequests` in length and by the connect timeout in time.
"""

from __future__ import annotations

import enum
from collections import Counter
from typing import Final


class Limit(enum.Enum):
    REQUESTS = "max_requests"
    RETRIES = "max_retries"
    CONNECTIONS = "max_connections"
    PENDING = "max_pending_requests"


LIMITS: Final[dict[Limit, str]] = {
    Limit.REQUESTS: "backend: BackendBreakers.enter_request",
    Limit.RETRIES: "backend: BackendBreakers.enter_retry",
    Limit.CONNECTIONS: "endpoint: EndpointPool.connect",
    Limit.PENDING: "endpoint: EndpointPool.connect (waiters)",
}


class BackendBreakers:
    """Per-backend request and retry counts of one worker, and overflow counts."""

    __slots__ = ("overflows", "requests", "retries")

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.retries: dict[str, int] = {}
        self.overflows: Counter[tuple[str, str]] = Counter()
        """(backend, limit value) → requests refused."""

    def enter_request(self, backend: str, limit: int) -> bool:
        """Count a request in; False (and counted as overflow) when beyond `limit`.

        The request is counted either way: `leave_request` is called once per
        entered request, admitted or not, so the exchange's end needs no flag.
        """
        requests = self.requests
        n = requests.get(backend, 0) + 1
        requests[backend] = n
        if n > limit:
            self.overflows[(backend, Limit.REQUESTS.value)] += 1
            return False
        return True

    def leave_request(self, backend: str) -> None:
        requests = self.requests
        n = requests.get(backend, 1) - 1
        if n > 0:
            requests[backend] = n
        else:
            requests.pop(backend, None)

    def enter_retry(self, backend: str, limit: int) -> bool:
        """Whether a request may start retrying (counted in only when it may)."""
        n = self.retries.get(backend, 0)
        if n >= limit:
            self.overflows[(backend, Limit.RETRIES.value)] += 1
            return False
        self.retries[backend] = n + 1
        return True

    def leave_retry(self, backend: str) -> None:
        n = self.retries.get(backend, 1) - 1
        if n > 0:
            self.retries[backend] = n
        else:
            self.retries.pop(backend, None)

    def pending_overflow(self, backend: str) -> None:
        """The pool refused a request (connections and waiters at their limits)."""
        self.overflows[(backend, Limit.PENDING.value)] += 1
