"""Schema field paths (`routes[].rules[].rateLimit`) and where a file writes them.

The declarations about fields (`unsupported.NOT_SUPPORTED`,
`referenced_files.FILE_FIELDS`, the coverage table of the tests) name fields
the way a reader of the schema does: camelCase keys joined by dots, `[]` for
"every item of this list". `written_paths` finds the concrete data paths
(`routes[0].rules[2].rateLimit`) a parsed file actually contains, so a check
reports at the key the user wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.config.errors import Path

ITEMS = "[]"


def pattern_parts(pattern: str) -> tuple[str, ...]:
    """`"routes[].rules[].rateLimit"` → `("routes", "[]", "rules", "[]", "rateLimit")`."""
    out: list[str] = []
    for name in pattern.split("."):
        list_levels = 0
        while name.endswith(ITEMS):
            name = name[: -len(ITEMS)]
            list_levels += 1
        out.append(name)
        out.extend([ITEMS] * list_levels)
    return tuple(out)


def written_paths(data: Any, pattern: str) -> Iterator[Path]:
    """Concrete data paths matching `pattern` that `data` (parsed YAML/JSON) contains."""
    return _walk(data, pattern_parts(pattern), ())


def _walk(node: Any, parts: tuple[str, ...], path: Path) -> Iterator[Path]:
    if not parts:
        yield path
        return
    head, rest = parts[0], parts[1:]
    if head == ITEMS:
        if isinstance(node, list):
            for index, item in enumerate(node):
                yield from _walk(item, rest, (*path, index))
    elif isinstance(node, dict) and head in node:
        yield from _walk(node[head], rest, (*path, head))
