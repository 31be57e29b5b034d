"""Which build of the HTTP hot path this process runs: mypyc-compiled or interpreted.

`setup.py` compiles the modules in `HOT_PATH` with mypyc and records the
SHA-256 of each source it compiled in `compiled.json` beside this file. The
C extensions sit next to their sources, and Python prefers an extension over
a source, so an edited source would silently lose to its stale extension.
`choose()` (run by `gateway/__init__.py` before any of these modules is
imported) therefore checks the recorded hashes and, when any source changed
since the build, or when `PORTWAY_PURE=1` is set, loads every hot-path module
from its source instead. It is all or none: the compiled modules link to
each other's native classes directly, so one interpreted module among
compiled ones would not work.

This module imports only the standard library: `setup.py` runs it to learn
`HOT_PATH` and to write the hashes.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

HOT_PATH = (
    "context",
    "http.exchange",
    "http.head",
    "http.plan",
    "http.field_roles",
    "http.core_client",
    "http.filters.base",
    "http.filters.cors",
    "http.filters.redirect",
    "http.filters.gcra",
    "http.filters.networks",
    "http.filters.ratelimit",
    "http.filters.shared_buckets",
    "http.filters.access",
    "http.filters.auth",
    "shared_table",
    "http.filters.rewrite",
    "http.request",
    "http.tries",
    "http.response",
    "http.upstream_head",
    "http.proxy",
    "http.lane_proxy",
    "hop_by_hop",
    "upstream.response_core",
    "upstream.connection",
    "upstream.pool",
    "upstream.breaker",
    "upstream.outlier",
    "http.deadline_watch",
    "ops.observer",
    "ops.request_stats",
    "routing.facts",
    "routing.affinity",
    "routing.endpoints",
    "routing.hashing",
    "routing.locality",
    "routing.picker",
    "routing.maglev",
    "routing.ring_hash",
    "routing.backend",
    "routing.split",
    "routing.route",
    "routing.decision",
    "routing.match",
    "routing.hosts",
    "routing.table",
)
"""Modules of the `gateway` package that mypyc compiles (one group: they call
each other natively). The routing core's compiler and explain stay interpreted
(not per request). Of the filter chain, the built-in filters that run per
request and hold no asyncio are compiled (their contract in `base`, CORS,
redirect, URL rewrite, the edge's access and auth); mirrors start tasks and
stay interpreted, header modifiers are folded into bytes at compile time,
and rate limits are compiled with their buckets. Objects kept in weak
collections (rate-limit stores, JWKS key sets) are mypyc non-native classes,
which can be weakly referenced: +0.11-0.24 us a request for a worker-scope
limit instead of +0.32-0.38 interpreted.
The resilience bookkeeping every request calls (breaker counts, outlier
success reports, the deadline watch) is compiled too: interpreted, those
four calls cost ~0.3 us a request (`benchmarks/proxy_cost.py`).
`gateway.transport` and `gateway.outcome` stay out on purpose: a Protocol
and enums that compiled code must not check at run time. mypyc builds frozen
dataclasses through their generated Python `__init__`, so the compiler fills
its 500,000 `Endpoint`s slot by slot instead (`expansion._expand_record`).
Compiled dataclasses need their field types at class creation, so these
modules import each other at run time without cycles."""

HERE = Path(__file__).resolve().parent
RECORD = HERE / "compiled.json"

state = "interpreted: not built"
"""`compiled`, or `interpreted: <why>`; set by `choose`, shown in logs, /config
and the `portway_build_info` metric."""


def source_path(root: Path, name: str) -> Path:
    """The source of hot-path module `name` (`http.proxy`, `routing.table`) under `root`."""
    return root.joinpath(*name.split(".")).with_suffix(".py")


def source_hashes(root: Path = HERE) -> dict[str, str]:
    """SHA-256 of each hot-path source under `root`."""
    return {
        name: hashlib.sha256(source_path(root, name).read_bytes()).hexdigest() for name in HOT_PATH
    }


def write_record(root: Path) -> None:
    """Record the sources being compiled (called by `setup.py`)."""
    (root / RECORD.name).write_text(json.dumps(source_hashes(root), indent=1) + "\n")


def _built(root: Path, name: str) -> bool:
    source = source_path(root, name)
    return any(
        source.with_suffix(suffix).exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


def why_interpreted(root: Path = HERE, env: Mapping[str, str] = os.environ) -> str | None:
    """None when the compiled modules under `root` may be used, else the reason not to."""
    if env.get("PORTWAY_PURE", "") not in ("", "0"):
        return "PORTWAY_PURE is set"
    missing = [name for name in HOT_PATH if not _built(root, name)]
    if len(missing) == len(HOT_PATH):
        return "not built"
    if missing:
        return "partly built: " + ", ".join(missing) + " missing"
    try:
        recorded = json.loads((root / RECORD.name).read_text())
    except (OSError, ValueError):
        return f"{RECORD.name} missing or unreadable"
    changed = [n for n, digest in source_hashes(root).items() if recorded.get(n) != digest]
    if changed:
        return "sources changed since the build: " + ", ".join(changed) + " (reinstall)"
    return None


def stray_extensions(root: Path = HERE) -> set[str]:
    """Modules with an extension under `root` that are not in `HOT_PATH` (left over by an
    earlier build that compiled them): their sources must win."""
    stray = set()
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for ext in root.rglob(f"*{suffix}"):
            name = ".".join(ext.relative_to(root).parts)[: -len(suffix)]
            if name not in HOT_PATH and source_path(root, name).exists():
                stray.add(name)
    return stray


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the `names` modules of `gateway` as sources, ahead of their extensions."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.partition(".")
        if package != "gateway" or name not in self.names:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(HERE, name))


def choose() -> str:
    """Decide compiled or interpreted for this process (once, before any import)."""
    global state
    why = why_interpreted()
    sources = stray_extensions()
    if why is None:
        state = "compiled"
    else:
        state = f"interpreted: {why}"
        sources |= set(HOT_PATH)
    if sources and not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder(sources))
    return state
