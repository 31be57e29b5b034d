"""The value types of the routing config language: durations, addresses, names, enums.

Shared by every block of `gateway.config.model` (see it for the language).
Durations are written `250ms`, `10s`, `1m`, `1h` (or a bare number of
seconds) and held as float seconds in fields named `*_s`.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

CONFIG = ConfigDict(
    extra="forbid",
    alias_generator=to_camel,
    populate_by_name=True,
    use_enum_values=False,
)

DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$"
_DURATION = re.compile(DURATION_PATTERN)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
DURATION_FORMS = "a number of seconds or a string like 250ms, 10s, 1m or 1h"


def parse_duration(value: object) -> float:
    """`"250ms"` → 0.25; numbers are seconds. Raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"a duration is {DURATION_FORMS}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"a duration must be finite: {DURATION_FORMS}")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNIT_S[m.group(2)]
    raise ValueError(f"{value!r} is not a duration; write {DURATION_FORMS}")


def format_duration(seconds: float) -> str | float:
    """The shortest of `2h`, `5m`, `10s`, `250ms` that parses back to exactly `seconds`.

    Values no unit renders exactly (e.g. 1e-7) come back as a plain float, which
    `parse_duration` also reads, so dumping and loading a config is lossless.
    """
    if seconds == 0:
        return "0s"
    for unit in ("h", "m", "s", "ms"):
        count = seconds / _UNIT_S[unit]
        if count.is_integer() and parse_duration(f"{int(count)}{unit}") == seconds:
            return f"{int(count)}{unit}"
    text = repr(seconds)
    if "e" not in text and "n" not in text and parse_duration(f"{text}s") == seconds:
        return f"{text}s"
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str | float),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"type": "number", "minimum": 0},
            ],
            "description": f"A duration: {DURATION_FORMS}.",
        }
    ),
]


def _check_cidr(value: str) -> str:
    ipaddress.ip_network(value, strict=False)
    return value


def _check_ip(value: str) -> str:
    ipaddress.ip_address(value)
    return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


Cidr = Annotated[str, AfterValidator(_check_cidr)]
IPAddress = Annotated[str, AfterValidator(_check_ip)]
Port = Annotated[int, Field(ge=1, le=65535)]
Percent = Annotated[float, Field(ge=0, le=100)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]


class ListenerProtocol(enum.Enum):
    HTTP = "HTTP"
    HTTPS = "HTTPS"
    TLS = "TLS"  # TLS passthrough: route on SNI, do not terminate
    TCP = "TCP"


class PathMatchType(enum.Enum):
    EXACT = "Exact"
    PATH_PREFIX = "PathPrefix"
    REGULAR_EXPRESSION = "RegularExpression"


class StringMatchType(enum.Enum):
    EXACT = "Exact"
    REGULAR_EXPRESSION = "RegularExpression"


class LbPolicy(enum.Enum):
    ROUND_ROBIN = "round_robin"
    LEAST_REQUEST = "least_request"
    RANDOM = "random"
    RING_HASH = "ring_hash"
    MAGLEV = "maglev"


class HashSource(enum.Enum):
    CLIENT_IP = "client_ip"
    HEADER = "header"
    COOKIE = "cookie"


class AccessAction(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
