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


class UpstreamFailure(Exception):
    """Base of upstream failures; `cause` is the `portway-error` token."""

    cause = "upstream_failure"


class ConnectFailure(UpstreamFailure):
    cause = "upstream_connect_failure"


class UpstreamReset(UpstreamFailure):
    cause = "upstream_reset"


class UpstreamTimeout(UpstreamFailure):
    cause = "upstream_timeout"


class UpstreamProtocolError(UpstreamFailure):
    cause = "upstream_protocol_error"


class CircuitOpen(UpstreamFailure):
    cause = "overflow"


class StatusFailure(UpstreamFailure):
    """An upstream 5xx answer treated as a failed try (retry.on: gateway-error / 5xx)."""

    def __init__(self, cause: str, status: int) -> None:
        super().__init__(f"upstream answered {status}")
        self.cause = cause
