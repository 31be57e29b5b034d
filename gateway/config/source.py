"""Parse config text into plain data plus a map of where every value sits.

ruamel.yaml's round-trip loader remembers the line and column of each key and
value (`.lc`). We walk its tree once, producing plain Python values (dict,
list, str, int, float, bool, None) for validation and a `SourceMap` from data
paths to positions, so later stages can point at a key without holding on to
ruamel's node types. JSON is parsed by the same loader (JSON is YAML 1.2);
a syntax error names the format the file's extension says it is in.
Positions here are 0-based, as ruamel gives them; `ConfigIssue` adds one.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# yaml-rs allocates through its own mimalloc, which returns freed pages only after a delay
# counted in its later allocations: none come after a config is read, so a 10,000-route
# config's ~24 MiB of parse memory stayed resident for the gateway's life. Read by mimalloc
# when the extension loads; an operator's own setting wins.
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")

import yaml_rs
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from gateway.config.errors import ConfigIssue, Path, Severity

Position = tuple[int, int]


@dataclass(slots=True)
class SourceMap:
    """Positions of keys and values by data path (0-based line, column).

    Built with `text` set, the map is empty until the first lookup, which
    parses `text` with the positioned loader and fills it.
    """

    keys: dict[Path, Position] = field(default_factory=dict)
    values: dict[Path, Position] = field(default_factory=dict)
    text: str | None = field(default=None, repr=False)
    filename: str = ""

    def _locate(self) -> None:
        text, self.text = self.text, None
        if text is None:
            return
        try:
            located = _positioned(text, self.filename).positions
        except SourceSyntaxError:  # the fast loader took it; ruamel did not
            self.values[()] = (0, 0)
            return
        self.keys, self.values = located.keys, located.values

    def value_at(self, path: Path) -> Position:
        """Where the value at `path` starts, or its nearest ancestor's when absent."""
        if self.text is not None:
            self._locate()
        for end in range(len(path), -1, -1):
            found = self.values.get(path[:end])
            if found is not None:
                return found
        return (0, 0)

    def key_at(self, path: Path) -> Position:
        """Where the key of `path` is written; for list items and the root, the value."""
        if self.text is not None:
            self._locate()
        found = self.keys.get(path)
        return found if found is not None else self.value_at(path)


@dataclass(frozen=True, slots=True)
class ParsedSource:
    """A parsed document: plain data (None for an empty file) and its positions."""

    data: Any
    positions: SourceMap


class SourceSyntaxError(Exception):
    """The text is not YAML/JSON; carries one issue at the parser's position."""

    def __init__(self, issue: ConfigIssue) -> None:
        self.issue = issue
        super().__init__(str(issue))


def parse_source(text: str, filename: str) -> ParsedSource:
    """Parse YAML or JSON text; raises `SourceSyntaxError` with a file:line:col issue.

    Positions are computed on first use (see the module docstring).
    """
    if "<<" not in text:
        try:
            data = yaml_rs.loads(text)
        except (yaml_rs.YAMLDecodeError, ValueError, TypeError):
            pass
        else:
            return ParsedSource(_plain_data(data), SourceMap(text=text, filename=filename))
    return _positioned(text, filename)


def _plain_data(node: Any) -> Any:
    """yaml-rs values → what `_plain` makes of ruamel's (string keys, dates as ISO text)."""
    if type(node) is dict:
        return {
            (key if type(key) is str else _key_text(key)): _plain_data(value)
            for key, value in node.items()
        }
    if type(node) is list:
        return [_plain_data(value) for value in node]
    if type(node) is str:
        return _join_surrogates(node)
    if isinstance(node, datetime.date):
        return node.isoformat()
    return node


def _key_text(key: Any) -> str:
    """A non-string key as ruamel's path shows it (`true` → `True`, as `str` does)."""
    return str(key)


def _positioned(text: str, filename: str) -> ParsedSource:
    """Parse with ruamel's round-trip loader, recording every position."""
    yaml = YAML(typ="rt")
    kind = format_name(filename)
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        raise SourceSyntaxError(_syntax_issue(exc, filename, kind)) from None
    except YAMLError as exc:
        raise SourceSyntaxError(
            ConfigIssue(filename, 1, 1, "", f"{kind} syntax error: {exc}", Severity.ERROR)
        ) from None
    positions = SourceMap()
    root_pos = _node_position(tree)
    positions.values[()] = root_pos if root_pos is not None else (0, 0)
    return ParsedSource(_plain(tree, (), positions), positions)


def format_name(filename: str) -> str:
    """`JSON` for a `.json` file, else `YAML`: the word a syntax error uses."""
    return "JSON" if filename.lower().endswith(".json") else "YAML"


def _syntax_issue(exc: MarkedYAMLError, filename: str, kind: str) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    parts = [part for part in (exc.context, exc.problem) if part]
    message = "; ".join(parts) if parts else f"invalid {kind}"
    if exc.context_mark is not None and exc.problem_mark is not None and exc.context:
        message += f" (started at line {exc.context_mark.line + 1})"
    return ConfigIssue(filename, line, column, "", f"{kind} syntax error: {message}")


def _node_position(node: object) -> Position | None:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return None
    return (int(lc.line), int(lc.col))


def _plain(node: Any, path: Path, positions: SourceMap) -> Any:
    """ruamel's round-trip values → plain Python, recording positions under `path`."""
    if isinstance(node, Mapping):
        out: dict[Any, Any] = {}
        lc = getattr(node, "lc", None)
        for key, value in node.items():
            child = (*path, str(key) if not isinstance(key, str) else key)
            if lc is not None:
                with contextlib.suppress(KeyError, TypeError):  # merged (<<) keys have none
                    positions.keys[child] = _pair(lc.key(key))
                    positions.values[child] = _pair(lc.value(key))
            nested = _node_position(value)
            if nested is not None and child not in positions.values:
                positions.values[child] = nested
            out[child[-1]] = _plain(value, child, positions)
        return out
    if isinstance(node, Sequence) and not isinstance(node, str | bytes):
        items: list[Any] = []
        lc = getattr(node, "lc", None)
        for index, value in enumerate(node):
            child = (*path, index)
            if lc is not None:
                with contextlib.suppress(KeyError, IndexError, TypeError):
                    positions.values[child] = _pair(lc.item(index))
            items.append(_plain(value, child, positions))
        return items
    return _plain_scalar(node)


def _pair(value: Sequence[int]) -> Position:
    return (int(value[0]), int(value[1]))


def _plain_scalar(node: Any) -> Any:
    if type(node) is str:
        return _join_surrogates(node)
    if node is None or type(node) in (int, float, bool):
        return node
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return _join_surrogates(str(node))
    if isinstance(node, datetime.date):
        return node.isoformat()
    return node


_SURROGATE = re.compile("[\ud800-\udfff]")


def _join_surrogates(text: str) -> str:
    """JSON writes characters beyond U+FFFF as `\\ud83d\\ude00` pairs; ruamel keeps
    the halves apart, so join them (a lone half becomes U+FFFD)."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
