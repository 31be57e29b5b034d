"""`portway registry ls|get|put|watch`: look at and write the shared registry by hand.

Useful in drills and on-prem setups: `put` publishes a hand-written YAML or
JSON record (static by default; `--ttl S --hold` keeps it alive under a lease
until interrupted, then withdraws it), `ls` and `get` read, `watch` prints
changes as JSON lines. Reading verbs never create anything: a files directory
that does not exist is an error naming it. Records that cannot be used are
named with their key and the field at fault. Exit status: 0 ok, 1 not found /
bad records / refused / registry unreachable, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from portway.registry.backends import DEFAULT_CONSUL, DEFAULT_ETCD, DEFAULT_FILES_DIR

HELP = "list, read, publish and watch registry records (files, etcd or consul)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=["files", "etcd", "consul"],
        default="files",
        help="which registry to talk to (default files)",
    )
    parser.add_argument(
        "--dir",
        metavar="DIR",
        default=None,
        help=f"files backend: the registry directory (default: $PORTWAY_REGISTRY_DIR, "
        f"else ./{DEFAULT_FILES_DIR}); reading verbs require it to exist",
    )
    parser.add_argument(
        "--endpoints",
        default="",
        metavar="URLS",
        help=f"etcd: comma-separated client URLs (default {DEFAULT_ETCD}); consul: the agent "
        f"address (default $CONSUL_HTTP_ADDR, else {DEFAULT_CONSUL})",
    )
    parser.add_argument(
        "--root",
        default="",
        metavar="PREFIX",
        help="key root before portway/v1/services/ (default: none)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("ls", help="list records; bad records are named with their reason (exit 1)")
    get = sub.add_parser("get", help="print one record")
    get.add_argument("key", help="NAMESPACE/SERVICE/CLUSTER or the full key")
    put = sub.add_parser("put", help="publish a record file (YAML or JSON)")
    put.add_argument("file", type=Path, help="the record file (docs/registry-record.md)")
    put.add_argument(
        "--ttl",
        type=float,
        default=None,
        metavar="S",
        help="lease TTL in seconds (default: none, the record stays until replaced)",
    )
    put.add_argument("--hold", action="store_true", help="keep renewing until interrupted")
    watch = sub.add_parser("watch", help="print changes as JSON lines")
    watch.add_argument(
        "--count", type=int, default=0, metavar="N", help="stop after N changes (default 0: never)"
    )
    watch.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        metavar="S",
        help="stop after S seconds (default 0: never)",
    )


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def files_directory(given: str | None) -> Path:
    """The files registry directory a verb means: --dir, $PORTWAY_REGISTRY_DIR, ./registry."""
    return Path(given or os.environ.get("PORTWAY_REGISTRY_DIR") or DEFAULT_FILES_DIR)


def directory_source(given: str | None, flag: str = "--dir") -> str:
    """Where a files directory was named: the flag, the environment, or the default."""
    if given:
        return flag
    return "$PORTWAY_REGISTRY_DIR" if os.environ.get("PORTWAY_REGISTRY_DIR") else "the default"


def missing_directory(directory: Path, source: str) -> str | None:
    """Why a reading verb cannot use `directory` (it never creates one); None when it can."""
    if directory.is_dir():
        return None
    what = "is not a directory" if directory.exists() else "does not exist"
    return f"registry directory {str(directory)!r} ({source}) {what}"


async def _run(args: argparse.Namespace) -> int:
    from portway.model import KEY_PREFIX, RecordError, ServiceKey
    from portway.registry.backends import open_registry
    from portway.registry.base import RegistryError

    path = None
    if args.backend == "files":
        directory = files_directory(args.dir)
        problem = (
            missing_directory(directory, directory_source(args.dir))
            if args.action != "put"
            else None
        )
        if problem is not None:
            print(f"portway registry: {problem}", file=sys.stderr)
            return 1
        path = str(directory)
    endpoints = [e for e in args.endpoints.split(",") if e]
    from portway.registry.decode import collect_bad_records

    with collect_bad_records() as skipped:
        reg = open_registry(args.backend, path=path, endpoints=endpoints, root=args.root)
        try:
            if args.action == "ls":
                snap = await reg.snapshot()
                rows = [snap.records[k] for k in sorted(snap.records, key=ServiceKey.path)]
                if args.json:
                    print(json.dumps([r.to_dict() for r in rows], indent=2))
                else:
                    for r in rows:
                        nodes = ",".join(n.address for n in r.nodes if n.ready)
                        ports = ",".join(f"{p.port}->{p.node_port}" for p in r.ports)
                        print(f"{r.key.path()}\tregion={r.region}\tports={ports}\tnodes={nodes}")
                print_bad(skipped)
                where = f" in {path}" if path else ""
                print(
                    f"{len(rows)} records{where} at revision {snap.revision}"
                    + (f", {len(skipped)} bad (skipped)" if skipped else ""),
                    file=sys.stderr,
                )
                return 1 if skipped else 0
            if args.action == "get":
                text = args.key if args.key.startswith(KEY_PREFIX) else KEY_PREFIX + args.key
                record = (await reg.snapshot()).records.get(ServiceKey.parse(text))
                print_bad(skipped)
                if record is None:
                    print(f"portway registry: {text}: no such record", file=sys.stderr)
                    return 1
                print(json.dumps(record.to_dict(), indent=2))
                return 0
            if args.action == "put":
                return await _put(reg, args)
            return await _watch(reg, args)
        except (RegistryError, RecordError, OSError) as exc:
            print(f"portway registry: {exc}", file=sys.stderr)
            return 1
        finally:
            await reg.close()


def print_bad(found: dict[str, str]) -> None:
    """Each skipped record as `key: field: reason` on stderr."""
    for key, error in sorted(found.items()):
        print(f"portway registry: bad record {key}: {error}", file=sys.stderr)


async def _put(reg: Any, args: argparse.Namespace) -> int:
    from portway.model import RecordError
    from portway.registry.record_files import (
        file_name,
        load_record_file,
        record_file_bytes,
        write_atomic,
    )

    try:
        record = load_record_file(args.file).record
    except RecordError as exc:
        raise RecordError(str(args.file), str(exc)) from None
    except OSError as exc:
        raise RecordError(str(args.file), f"cannot read it: {exc.strerror or exc}") from None
    if args.backend == "files" and not args.ttl:
        # an operator's static record: no owner, replaced by the next `put`
        path = reg.directory / file_name(record.key)
        write_atomic(path, record_file_bytes(record, None, ""))
        print(f"wrote {path}", file=sys.stderr)
        return 0
    lease = await reg.publish(record, ttl_s=args.ttl)
    print(f"published {record.key.path()} (lease {lease.lease_id})", file=sys.stderr)
    if args.hold and args.ttl:
        with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
            await asyncio.Event().wait()
        return 0
    await reg.abandon(record.key)  # leave it in place: static, or until its TTL lapses
    return 0


async def _watch(reg: Any, args: argparse.Namespace) -> int:
    from portway.registry.base import Snapshot

    seen = 0
    start = (await reg.snapshot()).revision

    async def follow() -> None:
        nonlocal seen
        async for item in reg.watch(start):
            if isinstance(item, Snapshot):
                out = {"snapshot": sorted(k.path() for k in item.records)}
            else:
                out = {"kind": item.kind.value, "key": item.key.path()}
            print(json.dumps({"revision": item.revision, **out}), flush=True)
            seen += 1
            if args.count and seen >= args.count:
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(follow(), args.timeout or None)
    return 0
