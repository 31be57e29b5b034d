"""docs/registry-record.md is generated from the format tables and its example is a valid record."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from portway.record_reference import EXAMPLE, REFERENCE_FILE, REGENERATE_COMMAND, render
from portway.registry.record_files import parse_record_file


def test_the_reference_is_up_to_date() -> None:
    assert REFERENCE_FILE.read_text(encoding="utf-8") == render(), (
        f"{REFERENCE_FILE.name} is stale; regenerate it with: {REGENERATE_COMMAND}"
    )


def test_the_reference_s_example_is_a_record_registry_put_accepts(tmp_path: Path) -> None:
    text = REFERENCE_FILE.read_text(encoding="utf-8")
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    parsed = parse_record_file(tmp_path / "example.yaml", example.encode(), 0.0)
    assert parsed.record == dataclasses.replace(EXAMPLE, published_at=0.0)


def test_every_key_of_the_format_is_documented() -> None:
    text = render()
    for key in ("externalTrafficPolicy", "localEndpoints", "nodePort", "ttlSeconds", "owner"):
        assert f"| `{key}` |" in text
