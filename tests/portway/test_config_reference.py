"""docs/configuration.md is generated from the JSON Schema and covers every block and key."""

from __future__ import annotations

import json

from portway.config_reference import (
    REFERENCE_FILE,
    REGENERATE_COMMAND,
    SCHEMA_FILE,
    block_order,
    render,
    type_of,
)


def test_the_reference_is_up_to_date() -> None:
    assert REFERENCE_FILE.read_text(encoding="utf-8") == render(), (
        f"{REFERENCE_FILE.name} is stale; regenerate it with: {REGENERATE_COMMAND}"
    )


def test_every_block_and_every_key_of_the_schema_is_documented() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    text = render(schema)
    defs = schema["$defs"]
    for name, block in defs.items():
        if "properties" not in block:
            continue
        assert name in block_order(schema), f"{name} is not reachable from the top of a file"
        section = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        for key in block["properties"]:
            assert f"| `{key}` |" in section, (name, key)


def test_types_read_as_words_with_links_to_blocks() -> None:
    defs = {"Canary": {"type": "object", "properties": {}}, "Proto": {"enum": ["HTTP", "TCP"]}}
    assert type_of({"$ref": "#/$defs/Canary"}, defs) == "[Canary](#canary)"
    assert type_of({"$ref": "#/$defs/Proto"}, defs) == "one of `HTTP`, `TCP`"
    assert type_of({"type": "array", "items": {"type": "string"}}, defs) == "list of string"
    nullable = {"anyOf": [{"$ref": "#/$defs/Canary"}, {"type": "null"}]}
    assert type_of(nullable, defs) == "[Canary](#canary) (optional)"
    text = {"type": "string", "pattern": r"^\s*(\d+(?:\.\d+)?)"}
    duration = {"anyOf": [text, {"type": "number"}]}
    assert type_of(duration, defs) == "duration"
