"""Durations, issue formatting and the config digest."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config.errors import ConfigError, ConfigIssue, Severity, format_path
from gateway.config.loader import config_digest
from gateway.config.model import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("10s", 10.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (" 2 m ", 120.0),
        ("30", 30.0),
        (0, 0.0),
        (2.5, 2.5),
        (7, 7.0),
    ],
)
def test_parse_duration_accepts_units_and_plain_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "-1s", "1d", "", "ms", True, None, -1, math.inf])
def test_parse_duration_rejects_with_the_accepted_forms(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0s"), (0.25, "250ms"), (15.0, "15s"), (90.0, "90s"), (300.0, "5m"), (7200.0, "2h")],
)
def test_format_duration_picks_the_largest_exact_unit(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_format_duration_parses_back_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_issue_prints_like_a_compiler_diagnostic() -> None:
    issue = ConfigIssue("gw.yaml", 12, 7, "routes[0].rules[1].backendRefs[0].name", "no backend")
    assert str(issue) == "gw.yaml:12:7: routes[0].rules[1].backendRefs[0].name: no backend"
    warning = ConfigIssue("gw.yaml", 3, 1, "backends[0]", "unused", Severity.WARNING)
    assert str(warning) == "gw.yaml:3:1: backends[0]: warning: unused"
    assert str(ConfigIssue("gw.yaml", 1, 1, "", "bad YAML")) == "gw.yaml:1:1: bad YAML"
    assert warning.as_json()["severity"] == "warning"


def test_issue_is_frozen() -> None:
    issue = ConfigIssue("a", 1, 1, "", "m")
    with pytest.raises(AttributeError):
        issue.line = 2  # type: ignore[misc]


def test_config_error_lists_every_issue_in_file_order() -> None:
    later = ConfigIssue("a.yaml", 9, 1, "x", "second")
    earlier = ConfigIssue("a.yaml", 2, 5, "y", "first")
    error = ConfigError([later, earlier])
    assert error.issues == (earlier, later)
    assert str(error) == "a.yaml:2:5: y: first\na.yaml:9:1: x: second"


def test_format_path_uses_dots_and_brackets() -> None:
    assert format_path(("routes", 0, "rules", 1, "backendRefs")) == "routes[0].rules[1].backendRefs"
    assert format_path(()) == ""


def test_config_digest_is_short_stable_and_content_sensitive() -> None:
    assert config_digest("a: 1\n") == config_digest("a: 1\n")
    assert config_digest("a: 1\n") != config_digest("a: 2\n")
    assert len(config_digest("")) == 12 and int(config_digest("x"), 16) >= 0
