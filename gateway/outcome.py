"""How a request ended: Envoy's response flags and portway's error kinds, as closed sets.

`ResponseFlag` is what the access log's `response_flags` field says (Envoy's
codes: UF, UH, UO, NR, URX, UT, UR, UPE, DC, plus the edge filters' own
answers). It is an `IntEnum` so that an `Exchange` holds a small int and the
text is one index into `FLAG_TEXT`, a tuple built here once: nothing is
formatted per request.

`ErrorKind` is why the gateway answered a request itself, the token of its
`portway-error` response header (`no_route`, `upstream_timeout`, ...). It is a
`StrEnum`, so a member is the very string the header, the status table
(`http.head.ERROR_STATUS`) and the retry classes (`upstream.retry_policy`)
key on: typed for mypy, free at run time. A failed try's cause
(`upstream.failure.UpstreamFailure.cause`) is one of these; the causes a
retry is decided on are `RETRY_CAUSES`.

Kept out of the compiled hot path (`gateway.compiled.HOT_PATH`): enum classes
are ordinary Python classes under mypyc too, and they are read on failures
and in the access log only.
"""

from __future__ import annotations

import enum
from typing import Final


class ResponseFlag(enum.IntEnum):
    """Envoy's response flags the gateway sets (its access log's `response_flags`)."""

    NONE = 0
    """Nothing went wrong (the access log writes "")."""
    DC = 1
    """The client closed its connection before the response was complete."""
    UF = 2
    """No upstream connection could be opened (refused, unreachable, timed out)."""
    UO = 3
    """A circuit breaker limit was reached (overflow)."""
    UR = 4
    """The upstream reset or closed the connection, or the response was cut."""
    UT = 5
    """The upstream did not answer before the request or per-try timeout."""
    UH = 6
    """No healthy endpoint was left to send the request to."""
    NR = 7
    """No route matched the request (or its Host)."""
    URX = 8
    """Retries were exhausted: the last try's failure was answered."""
    UPE = 9
    """The upstream's response could not be parsed."""
    ACCESS = 10
    """The edge's access rules refused the request (`portway-error: access`)."""
    AUTH = 11
    """Authentication failed (`portway-error: auth`)."""
    RATE_LIMITED = 12
    """A rate limit refused the request (`portway-error: rate_limited`)."""


NO_FLAG: Final = ResponseFlag.NONE
"""`ResponseFlag.NONE` as a module constant: what every exchange starts with."""

FLAG_TEXT: Final[tuple[str, ...]] = (
    "",
    "DC",
    "UF",
    "UO",
    "UR",
    "UT",
    "UH",
    "NR",
    "URX",
    "UPE",
    "access",
    "auth",
    "rate_limited",
)
"""The access log's text of each `ResponseFlag`, by value. The edge filters'
answers keep the words their `portway-error` says (Envoy has no flag for an
RBAC or API-key refusal)."""


class ErrorKind(enum.StrEnum):
    """Why the gateway answered a request itself (`portway-error`)."""

    NO_ROUTE = "no_route"
    NO_HEALTHY_UPSTREAM = "no_healthy_upstream"
    MISDIRECTED_REQUEST = "misdirected_request"
    OVERFLOW = "overflow"
    UPSTREAM_CONNECT_FAILURE = "upstream_connect_failure"
    UPSTREAM_RESET = "upstream_reset"
    UPSTREAM_PROTOCOL_ERROR = "upstream_protocol_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_FAILURE = "upstream_failure"
    REQUEST_TIMEOUT = "request_timeout"
    REQUEST_BODY_TIMEOUT = "request_body_timeout"
    REQUEST_BODY_TOO_LARGE = "request_body_too_large"
    EXPECTATION_FAILED = "expectation_failed"
    GATEWAY_STATUS = "gateway_status"
    """The upstream answered 502/503/504 and the rule retries such answers."""
    SERVER_STATUS = "server_status"
    """The upstream answered another 5xx and the rule retries 5xx answers."""
    ACCESS = "access"
    AUTH = "auth"
    RATE_LIMITED = "rate_limited"


RETRY_CAUSES: Final = frozenset(
    {
        ErrorKind.UPSTREAM_CONNECT_FAILURE,
        ErrorKind.UPSTREAM_RESET,
        ErrorKind.UPSTREAM_TIMEOUT,
        ErrorKind.UPSTREAM_PROTOCOL_ERROR,
        ErrorKind.OVERFLOW,
        ErrorKind.GATEWAY_STATUS,
        ErrorKind.SERVER_STATUS,
    }
)
"""The failures of a try that a retry is decided on (`upstream.retry_policy.RETRY_CLASSES`)."""

ERROR_FLAGS: Final[dict[str, ResponseFlag]] = {
    ErrorKind.NO_ROUTE: ResponseFlag.NR,
    ErrorKind.MISDIRECTED_REQUEST: ResponseFlag.NR,
    ErrorKind.NO_HEALTHY_UPSTREAM: ResponseFlag.UH,
    ErrorKind.OVERFLOW: ResponseFlag.UO,
    ErrorKind.UPSTREAM_CONNECT_FAILURE: ResponseFlag.UF,
    ErrorKind.UPSTREAM_RESET: ResponseFlag.UR,
    ErrorKind.UPSTREAM_PROTOCOL_ERROR: ResponseFlag.UPE,
    ErrorKind.UPSTREAM_TIMEOUT: ResponseFlag.UT,
    ErrorKind.REQUEST_TIMEOUT: ResponseFlag.UT,
    ErrorKind.GATEWAY_STATUS: ResponseFlag.URX,
    ErrorKind.SERVER_STATUS: ResponseFlag.URX,
    ErrorKind.ACCESS: ResponseFlag.ACCESS,
    ErrorKind.AUTH: ResponseFlag.AUTH,
    ErrorKind.RATE_LIMITED: ResponseFlag.RATE_LIMITED,
}
"""The flag of an answer the gateway made for an `ErrorKind` (none for the client's own faults)."""


def flag_of(cause: str) -> ResponseFlag:
    """The response flag of an answer made for `cause` (`NONE` when it has none)."""
    return ERROR_FLAGS.get(cause, ResponseFlag.NONE)
