"""The issues of one config file as the semantic checks find them, each at its file:line:col.

The checks of `gateway.config.semantic` and its helper modules name a data
path (`("routes", 0, "rules", 1, "backendRefs")`, camelCase as in the file);
`IssueReport` finds where the file says it and records a `ConfigIssue` there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config.errors import ConfigIssue, Path, Severity, format_path
from gateway.config.source import SourceMap


@dataclass(slots=True)
class IssueReport:
    """Collects issues, turning data paths into positions.

    `add` reports at the value of `path` (at its key with `at_key`, for "remove
    this key"), as an error or, with `warn`, a warning."""

    positions: SourceMap
    filename: str
    issues: list[ConfigIssue] = field(default_factory=list)

    def add(self, path: Path, message: str, *, at_key: bool = False, warn: bool = False) -> None:
        line, column = self.positions.key_at(path) if at_key else self.positions.value_at(path)
        severity = Severity.WARNING if warn else Severity.ERROR
        self.issues.append(
            ConfigIssue(self.filename, line + 1, column + 1, format_path(path), message, severity)
        )

    def line_of(self, path: Path) -> int:
        return self.positions.value_at(path)[0] + 1
