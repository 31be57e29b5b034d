"""The registry record's JSON form, described once as data.

`portway.record_parser.parse_record` accepts exactly the keys listed here
(anything else is refused with a did-you-mean: a typo such as `raedy: false`
would otherwise leave `ready: true` in force without a word), and
`docs/registry-record.md` is generated from the same tables
(`python -m portway.record_reference`), so the format's documentation cannot
drift from what is read.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RecordField:
    """One key of the record's JSON form: what it holds, its default, why it is there.

    The tables below are the record format's single description: `parse_record`
    accepts exactly these keys (anything else is refused with a did-you-mean)
    and `docs/registry-record.md` is generated from them.
    """

    key: str
    kind: str
    default: str
    doc: str


RECORD_FIELDS: tuple[RecordField, ...] = (
    RecordField("v", "integer", "required", "Record format version; this portway reads 1."),
    RecordField("cluster", "string", "required", "The cluster that publishes the record."),
    RecordField("namespace", "string", "required", "The Service's namespace."),
    RecordField("service", "string", "required", "The Service's name."),
    RecordField(
        "region", "string", '""', "The cluster's region (node label topology.kubernetes.io/region)."
    ),
    RecordField("zones", "list of strings", "[]", "The zones the cluster's nodes are in."),
    RecordField(
        "ports", "list of ports", "[]", "The Service's ports with their NodePorts (below)."
    ),
    RecordField(
        "externalTrafficPolicy",
        "`Cluster` or `Local`",
        "`Cluster`",
        "Under `Local` only nodes with a ready local endpoint receive traffic, "
        "weighted by `localEndpoints`.",
    ),
    RecordField(
        "healthCheckNodePort",
        "integer or null",
        "null",
        "The port kube-proxy answers health checks on (policy `Local`).",
    ),
    RecordField(
        "sessionAffinity", "`None` or `ClientIP`", "`None`", "The Service's sessionAffinity."
    ),
    RecordField(
        "sessionAffinityTimeoutSeconds", "integer", "10800", "The Service's affinity timeout."
    ),
    RecordField(
        "nodePortRange",
        "[first, last]",
        "[30000, 32767]",
        "The cluster's NodePort range; a nodePort outside it is refused.",
    ),
    RecordField("nodes", "list of nodes", "[]", "The nodes that may receive traffic (below)."),
    RecordField(
        "publishedAt", "number", "0", "Wall-clock seconds of the write; the newest record wins."
    ),
)
PORT_FIELDS: tuple[RecordField, ...] = (
    RecordField("name", "string", '""', "The Service port's name (routes name it)."),
    RecordField("protocol", "`TCP`, `UDP` or `SCTP`", "`TCP`", "The port's protocol."),
    RecordField("port", "integer", "required", "The Service port number."),
    RecordField("nodePort", "integer", "required", "The NodePort every eligible node opens."),
)
NODE_FIELDS: tuple[RecordField, ...] = (
    RecordField("name", "string", "required", "The node's name (unique in the record)."),
    RecordField("address", "IPv4 or IPv6 address", "required", "Where the gateway connects."),
    RecordField("zone", "string", '""', "The node's zone (topology.kubernetes.io/zone)."),
    RecordField("ready", "true or false", "true", "NotReady nodes are picked only in panic mode."),
    RecordField(
        "localEndpoints",
        "integer >= 0",
        "0",
        "Ready endpoints of the Service on this node (policy `Local`).",
    ),
)


def unknown_key(
    raw: Mapping[str, Any], fields: Sequence[RecordField], outer: Collection[str] = ()
) -> tuple[str, str] | None:
    """The first key of `raw` not in `fields`, with a message naming what was meant.

    `outer` are keys the caller took out before (a record file's `ttlSeconds`);
    they are offered as suggestions and listed as allowed.
    """
    allowed = [f.key for f in fields]
    for key in raw:
        if key in allowed:
            continue
        choices = [*allowed, *outer]
        message = f"unknown key {key!r}"
        guess = closest(str(key), choices)
        if guess is not None:
            message += f"; did you mean {guess!r}?"
        return str(key), message + f" (allowed keys: {', '.join(choices)})"
    return None


def unknown_keys_everywhere(raw: Mapping[str, Any], outer: Collection[str] = ()) -> list[str]:
    """`path: message` for every unknown key of a record, its ports and its nodes."""
    found: list[str] = []
    top = {k: v for k, v in raw.items()}
    while (problem := unknown_key(top, RECORD_FIELDS, outer)) is not None:
        found.append(f"{problem[0]}: {problem[1]}")
        del top[problem[0]]
    for section, fields in (("ports", PORT_FIELDS), ("nodes", NODE_FIELDS)):
        items = raw.get(section)
        for index, item in enumerate(items if isinstance(items, list) else ()):
            if not isinstance(item, Mapping):
                continue
            rest = dict(item)
            while (problem := unknown_key(rest, fields)) is not None:
                found.append(f"{section}[{index}].{problem[0]}: {problem[1]}")
                del rest[problem[0]]
    return found


def closest(word: str, choices: Sequence[str]) -> str | None:
    """The choice a misspelt key most likely meant, ignoring case, `_` and `-`."""
    folded = {_fold(c): c for c in choices}
    close = difflib.get_close_matches(_fold(word), list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else None


def _fold(word: str) -> str:
    return word.replace("_", "").replace("-", "").lower()
