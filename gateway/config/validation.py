"""Shape validation: pydantic's errors turned into positioned, helpful issues.

pydantic reports each error with a `loc` (keys, list indexes and, inside
unions, the names of the union's members) and a terse message. Here every
error becomes a `ConfigIssue` that points at the offending key or value and
says both what is wrong and what would be accepted: the allowed keys (with a
"did you mean" for misspellings), an enum's choices, a number's range, the
duration forms. Errors from several members of one union are merged into one
issue, and pydantic's echo errors (a list "too short" only because one of its
items failed) are dropped.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from gateway.config.errors import ConfigIssue, Path, Severity, format_path
from gateway.config.model import DURATION_FORMS, GatewayConfig
from gateway.config.schema import allowed_keys, scalar_facts
from gateway.config.source import SourceMap

_NAME_HINT = (
    "names use lowercase letters, digits, '-' and '.', and start and end with a letter or digit"
)
_PATTERN_HINTS = {
    r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$": _NAME_HINT,
    r"^[A-Z]+$": "HTTP methods are written in upper case, e.g. GET",
}
_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "string": "a string",
    "bool": "true or false",
    "tuple": "a list",
    "list": "a list",
    "dict": "a mapping",
    "dataclass": "a mapping",
}


@functools.cache
def config_adapter() -> TypeAdapter[GatewayConfig]:
    """The validator for whole config files (built once: it takes a few milliseconds)."""
    return TypeAdapter(GatewayConfig)


def validate_shape(
    data: Any, positions: SourceMap, filename: str
) -> tuple[GatewayConfig | None, list[ConfigIssue]]:
    """Validate parsed data; returns the config, or None and every issue found."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        keys = ", ".join(allowed_keys(()))
        issue = _issue(
            filename,
            positions.value_at(()),
            (),
            f"the top level must be a mapping with keys: {keys}; got {_describe(data)}",
        )
        return None, [issue]
    try:
        return config_adapter().validate_python(data), []
    except ValidationError as exc:
        return None, issues_from_errors(exc.errors(), data, positions, filename)


def issues_from_errors(
    errors: Sequence[ErrorDetails], data: Any, positions: SourceMap, filename: str
) -> list[ConfigIssue]:
    """One issue per distinct problem, merging a union's member errors at one path."""
    grouped: dict[Path, list[ErrorDetails]] = {}
    plain: list[tuple[Path, ErrorDetails]] = []
    for error in errors:
        path, in_union = _data_path(error["loc"], data, error["type"])
        if _is_echo(error):
            continue
        if in_union:
            grouped.setdefault(path, []).append(error)
        else:
            plain.append((path, error))
    issues = [_error_issue(path, error, positions, filename) for path, error in plain]
    for path, members in grouped.items():
        if len(members) == 1:
            issues.append(_error_issue(path, members[0], positions, filename))
            continue
        wanted = _join_or([_expected_phrase(path, member) for member in members])
        message = f"{_describe(members[0]['input'])} is not allowed here; expected {wanted}"
        issues.append(_issue(filename, positions.value_at(path), path, message))
    return issues


def _data_path(loc: Sequence[str | int], data: Any, kind: str) -> tuple[Path, bool]:
    """The part of `loc` that names data (keys, indexes); True if union tags were dropped."""
    path: list[str | int] = []
    node = data
    dropped = False
    for index, part in enumerate(loc):
        found, child = _child(node, part)
        if found:
            node = child
            path.append(part)
        elif kind == "missing" and index == len(loc) - 1:
            path.append(part)  # a missing key names data that is not there
        else:
            dropped = True
    return tuple(path), dropped


def _child(node: Any, part: str | int) -> tuple[bool, Any]:
    if isinstance(node, dict) and isinstance(part, str) and part in node:
        return True, node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None


def _is_echo(error: ErrorDetails) -> bool:
    """pydantic re-reports a list as too short when only its items failed."""
    if error["type"] != "too_short":
        return False
    ctx = error.get("ctx") or {}
    given = error.get("input")
    return isinstance(given, list | tuple) and len(given) >= int(ctx.get("min_length", 0))


def _error_issue(
    path: Path, error: ErrorDetails, positions: SourceMap, filename: str
) -> ConfigIssue:
    kind = error["type"]
    if kind == "missing":
        key = str(path[-1]) if path else "?"
        message = f"missing required key '{key}'"
        return _issue(filename, positions.value_at(path[:-1]), path, message)
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return _issue(filename, positions.key_at(path), path, _unknown_key_message(path))
    return _issue(filename, positions.value_at(path), path, _value_message(path, error))


def _unknown_key_message(path: Path) -> str:
    key = str(path[-1])
    allowed = allowed_keys(path[:-1])
    message = f"unknown key '{key}'"
    guess = did_you_mean(key, allowed)
    if guess:
        message += f"; did you mean '{guess}'?"
    if allowed:
        message += f" (allowed keys: {', '.join(allowed)})"
    return message


def did_you_mean(word: str, choices: Sequence[str]) -> str | None:
    """The closest choice to a misspelt word, ignoring case, `_` and `-`; None if none is close."""
    folded = {_fold(choice): choice for choice in choices}
    if _fold(word) in folded:
        return folded[_fold(word)]
    close = difflib.get_close_matches(_fold(word), list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else None


def _fold(word: str) -> str:
    return word.replace("_", "").replace("-", "").lower()


def _value_message(path: Path, error: ErrorDetails) -> str:
    kind = error["type"]
    given = error["input"]
    ctx = error.get("ctx") or {}
    facts = scalar_facts(path)
    if kind in ("enum", "literal_error"):
        choices = [str(c) for c in facts.get("enum", ())] or [str(ctx.get("expected", ""))]
        message = f"{_describe(given)} is not allowed; expected one of: {', '.join(choices)}"
        guess = did_you_mean(str(given), choices) if isinstance(given, str) else None
        return message + (f"; did you mean '{guess}'?" if guess else "")
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{_describe(given)} is out of range; {_range_phrase(facts, ctx)}"
    if kind in ("too_short", "too_long"):
        low, high = ctx.get("min_length"), ctx.get("max_length")
        bound = f"at least {low}" if kind == "too_short" else f"at most {high}"
        return f"needs {bound} item(s), got {ctx.get('actual_length', '?')}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        hint = _PATTERN_HINTS.get(pattern, f"it must match the pattern {pattern}")
        return f"{_describe(given)} is not valid: {hint}"
    if kind == "string_too_long":
        return f"is too long: at most {ctx.get('max_length')} characters"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{_describe(given)} is not valid here; expected {_expected_phrase(path, error)}"


def _range_phrase(facts: dict[str, Any], ctx: dict[str, Any]) -> str:
    low = facts.get("minimum", ctx.get("ge"))
    high = facts.get("maximum", ctx.get("le"))
    if low is not None and high is not None:
        return f"allowed: {low} to {high}"
    if low is not None:
        return f"must be at least {low}"
    if "gt" in ctx:
        return f"must be greater than {ctx['gt']}"
    if high is not None:
        return f"must be at most {high}"
    return f"must be less than {ctx.get('lt')}"


def _expected_phrase(path: Path, error: ErrorDetails) -> str:
    """What one error (or one union member) wanted, in words."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in ("enum", "literal_error"):
        return f"one of {ctx.get('expected', '?')}"
    if kind == "value_error":
        text = str(error["msg"]).removeprefix("Value error, ")
        return DURATION_FORMS if "duration" in text else text
    if kind in ("dataclass_type", "dict_type", "model_type"):
        keys = allowed_keys(path)
        return f"a mapping with keys: {', '.join(keys)}" if keys else "a mapping"
    for prefix, words in _TYPE_WORDS.items():
        if kind.startswith(prefix):
            return words
    return str(error["msg"]).lower()


def _join_or(phrases: Sequence[str]) -> str:
    unique = list(dict.fromkeys(phrases))
    if len(unique) <= 2:
        return " or ".join(unique)
    return ", ".join(unique[:-1]) + ", or " + unique[-1]


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _issue(filename: str, position: tuple[int, int], path: Path, message: str) -> ConfigIssue:
    line, column = position
    return ConfigIssue(filename, line + 1, column + 1, format_path(path), message, Severity.ERROR)
