"""The config's JSON Schema: the checked-in file, and lookups into it.

`config/portway.schema.json` is generated from the model (never edited by
hand) so editors with YAML language servers complete and check keys. A test
fails when the file is stale; regenerate it with

    .venv/bin/python -m gateway.config.schema

The loader also reads the schema to explain errors: the keys a mapping
allows, the choices of an enum, the range of a number.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path as FilePath
from typing import Any

from gateway.config.errors import Path
from gateway.config.model import json_schema

SCHEMA_FILE = FilePath(__file__).resolve().parents[2] / "config" / "portway.schema.json"
REGENERATE_COMMAND = ".venv/bin/python -m gateway.config.schema"

JsonObject = dict[str, Any]


@functools.cache
def config_schema() -> JsonObject:
    """The schema as a dict (cached: generating it takes tens of milliseconds)."""
    return json_schema()


def render_schema() -> str:
    """The exact text of `config/portway.schema.json` (stable key order, final newline)."""
    return json.dumps(config_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _resolve(node: JsonObject) -> JsonObject:
    root = config_schema()
    while "$ref" in node:
        ref: str = node["$ref"]
        target: JsonObject = root["$defs"][ref.rsplit("/", 1)[-1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _branches(node: JsonObject) -> list[JsonObject]:
    node = _resolve(node)
    if "anyOf" in node:
        return [_resolve(branch) for branch in node["anyOf"]]
    return [node]


def subschema(path: Sequence[str | int]) -> JsonObject | None:
    """The schema of the value at a data path, through $refs, optionals and lists.

    Returns None when the path leaves the schema (an unknown key). For a union
    of objects the first branch that knows the next key wins.
    """
    node: JsonObject = config_schema()
    for part in path:
        nxt: JsonObject | None = None
        for branch in _branches(node):
            if isinstance(part, int) and "items" in branch:
                nxt = branch["items"]
                break
            props = branch.get("properties", {})
            if isinstance(part, str) and part in props:
                nxt = props[part]
                break
        if nxt is None:
            return None
        node = nxt
    return _resolve(node)


def object_schema(path: Path) -> JsonObject | None:
    """The object branch of the schema at `path` (skipping `null` and scalar branches)."""
    node = subschema(path)
    if node is None:
        return None
    for branch in _branches(node):
        if "properties" in branch:
            return branch
    return None


def allowed_keys(path: Path) -> tuple[str, ...]:
    """The keys the mapping at `path` may contain, in declaration order."""
    node = object_schema(path)
    return tuple(node.get("properties", {})) if node is not None else ()


def required_keys(path: Path) -> tuple[str, ...]:
    node = object_schema(path)
    return tuple(node.get("required", ())) if node is not None else ()


def scalar_facts(path: Path) -> JsonObject:
    """Merged facts (enum, minimum, maximum, pattern, description) of a scalar at `path`."""
    node = subschema(path)
    if node is None:
        return {}
    facts: JsonObject = {}
    for branch in _branches(node):
        for key in ("enum", "const", "minimum", "maximum", "exclusiveMinimum", "pattern"):
            if key in branch and key not in facts:
                facts[key] = branch[key]
    if "description" in node:
        facts["description"] = node["description"]
    return facts


def main(argv: Sequence[str] | None = None) -> int:
    """Write the schema file (or, with `--print`, print it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    text = render_schema()
    if "--print" in args:
        sys.stdout.write(text)
        return 0
    SCHEMA_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
