"""Config problems as values: where they are, what is wrong, how bad.

A `ConfigIssue` prints the way compilers print diagnostics,
`file:line:col: path: message`, so editors and CI annotators can jump to the
offending key. Lines and columns are 1-based. `path` names the field in the
file's own vocabulary (camelCase keys, list indexes), e.g.
`routes[0].rules[1].backendRefs[0].name`; it is empty for whole-file problems
such as a YAML syntax error.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PathPart = str | int
Path = tuple[PathPart, ...]


class Severity(enum.Enum):
    """An error makes the config unusable; a warning is worth reading but loads."""

    ERROR = "error"
    WARNING = "warning"


def format_path(path: Sequence[PathPart]) -> str:
    """`("routes", 0, "rules")` → `routes[0].rules`."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif out:
            out.append(f".{part}")
        else:
            out.append(part)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem found in a config file, with its 1-based position."""

    file: str
    line: int
    column: int
    path: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        label = "" if self.severity is Severity.ERROR else "warning: "
        if self.path:
            return f"{where}: {self.path}: {label}{self.message}"
        return f"{where}: {label}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def as_json(self) -> dict[str, str | int]:
        """The machine-readable form printed by `portway check --json`."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "severity": self.severity.value,
        }


def sort_issues(issues: Iterable[ConfigIssue]) -> tuple[ConfigIssue, ...]:
    """File order, then position, then path: the order a reader walks the file."""
    return tuple(sorted(issues, key=lambda i: (i.file, i.line, i.column, i.path, i.message)))


class ConfigError(Exception):
    """A config that cannot be used; carries every issue found, errors and warnings."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = sort_issues(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    @property
    def errors(self) -> tuple[ConfigIssue, ...]:
        return tuple(issue for issue in self.issues if issue.is_error)

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)
