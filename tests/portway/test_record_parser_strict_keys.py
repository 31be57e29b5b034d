"""Registry records are as strict as configs: a key the format does not have is refused."""

from __future__ import annotations

from typing import Any

import pytest

from portway.model import RecordError
from portway.record_format import NODE_FIELDS, PORT_FIELDS, RECORD_FIELDS
from portway.record_parser import parse_record


def good() -> dict[str, Any]:
    return {
        "v": 1,
        "cluster": "b",
        "namespace": "shop",
        "service": "web",
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
        "nodes": [{"name": "n1", "address": "10.0.0.1", "ready": False, "zone": "a"}],
        "externalTrafficPolicy": "Local",
    }


def test_the_issue_s_record_names_every_typo_with_a_did_you_mean() -> None:
    raw = good()
    raw["externalTraficPolicy"] = raw.pop("externalTrafficPolicy")
    node = raw["nodes"][0]
    node["raedy"], node["zoen"] = node.pop("ready"), node.pop("zone")
    with pytest.raises(RecordError) as caught:
        parse_record(raw)
    assert caught.value.path == "externalTraficPolicy"
    text = str(caught.value)
    assert text.startswith(
        "externalTraficPolicy: unknown key 'externalTraficPolicy'; did you mean "
        "'externalTrafficPolicy'?"
    )
    assert "; nodes[0].raedy: unknown key 'raedy'; did you mean 'ready'?" in text
    assert "; nodes[0].zoen: unknown key 'zoen'; did you mean 'zone'?" in text


def test_a_port_key_typo_is_refused_with_its_path() -> None:
    raw = good()
    raw["ports"][0]["node_port"] = 30081
    with pytest.raises(
        RecordError,
        match=r"ports\[0\]\.node_port: unknown key 'node_port'; "
        r"did you mean 'nodePort'\?",
    ):
        parse_record(raw)


def test_a_key_unlike_any_gets_the_allowed_list_and_no_guess() -> None:
    raw = good() | {"xyzzy": "blue"}
    with pytest.raises(RecordError) as caught:
        parse_record(raw)
    assert caught.value.message.startswith("unknown key 'xyzzy' (allowed keys: v, cluster,")


def test_every_key_the_writer_emits_is_in_the_format_tables() -> None:
    record = parse_record(good())
    out = record.to_dict()
    assert set(out) == {f.key for f in RECORD_FIELDS}
    assert set(out["ports"][0]) == {f.key for f in PORT_FIELDS}
    assert set(out["nodes"][0]) == {f.key for f in NODE_FIELDS}
    assert parse_record(out) == record


def test_a_record_file_s_own_keys_are_offered_as_suggestions(tmp_path: Any) -> None:
    from pathlib import Path

    from portway.registry.record_files import parse_record_file

    data = b"cluster: b\nnamespace: shop\nservice: web\nttlSecond: 10\n"
    with pytest.raises(RecordError, match="did you mean 'ttlSeconds'"):
        parse_record_file(Path(tmp_path) / "r.yaml", data, 0.0)
