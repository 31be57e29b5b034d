"""Config fields the language has but the gateway does not enforce yet.

A field that is parsed, validated and then read by nothing is a lie to the
user: the config says "health-check every 2 s" and nothing probes. Until its
enforcement exists, writing such a field is an error,

    gw.yaml:41:5: backends[0].healthCheck: not supported yet (...)

reported by `portway check` and by the gateway at startup and on reload
(both run `gateway.config.loader.check_config_text`). The field stays in the
model and the schema, so editors keep completing it and the day it is built
only the line below goes.

Contract: `NOT_SUPPORTED` holds schema field paths (`gateway.config.field_paths`,
`[]` for "every item of a list"); a path names a block (everything under it)
or a leaf. Enforcing a
field means deleting its line here and adding its test to the coverage table.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.config.errors import ConfigIssue, Path, Severity, format_path
from gateway.config.field_paths import written_paths
from gateway.config.source import SourceMap

NOT_SUPPORTED: Final[tuple[str, ...]] = ("gateway.cluster",)

MESSAGE: Final = "not supported yet: the gateway does not enforce this field; remove it"


def unsupported_issues(data: Any, positions: SourceMap, filename: str) -> list[ConfigIssue]:
    """One error per written field of `NOT_SUPPORTED`, at the field's key."""
    issues: list[ConfigIssue] = []
    for pattern in NOT_SUPPORTED:
        for path in written_paths(data, pattern):
            if _value(data, path) is None:
                continue  # `key: null` is the key left out
            line, column = positions.key_at(path)
            issues.append(
                ConfigIssue(
                    filename, line + 1, column + 1, format_path(path), MESSAGE, Severity.ERROR
                )
            )
    return issues


def _value(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data
