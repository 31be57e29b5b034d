"""Why an upstream try failed, as types the retry logic tells apart.

`cause` is the `portway-error` token and the retry class: `ConnectFailure`
(nothing was sent: always safe to retry), `UpstreamReset` (closed before or
during the response), `UpstreamTimeout`, `UpstreamProtocolError`,
`CircuitOpen` (cause `overflow`: a circuit breaker limit), and
`StatusFailure` (a 5xx answer a rule retries). Kept out of the compiled hot
path (`gateway.compiled`): they are raised on failures only, and class-level
`cause` overrides need ordinary Python classes.
"""

from __future__ import annotations

from gateway.outcome import ErrorKind


class UpstreamFailure(Exception):
    """Base of upstream failures; `cause` is the `portway-error` token."""

    cause: ErrorKind = ErrorKind.UPSTREAM_FAILURE


class ConnectFailure(UpstreamFailure):
    cause = ErrorKind.UPSTREAM_CONNECT_FAILURE


class UpstreamReset(UpstreamFailure):
    cause = ErrorKind.UPSTREAM_RESET


class UpstreamTimeout(UpstreamFailure):
    cause = ErrorKind.UPSTREAM_TIMEOUT


class UpstreamProtocolError(UpstreamFailure):
    cause = ErrorKind.UPSTREAM_PROTOCOL_ERROR


class CircuitOpen(UpstreamFailure):
    cause = ErrorKind.OVERFLOW


class StatusFailure(UpstreamFailure):
    """An upstream 5xx answer treated as a failed try (retry.on: gateway-error / 5xx)."""

    def __init__(self, cause: ErrorKind, status: int) -> None:
        super().__init__(f"upstream answered {status}")
        self.cause = cause
