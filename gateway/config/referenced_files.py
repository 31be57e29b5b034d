"""Files a config names (certificates, keys, key lists, JWKS): present and usable.

A TLS listener whose key file is missing used to pass `portway check` and
then kill the gateway with "[Errno 2] No such file or directory", naming no
file. Here every field that holds a file path is declared once in
`FILE_FIELDS` with what the file must contain; `check_referenced_files`
opens each written one and reports, at the value's position,

    gw.yaml:12:21: listeners[0].tls.certificates[0].keyFile: cannot read
    '/etc/tls/k.pem': No such file or directory

`portway check`, the gateway's startup and every reload run it (through
`gateway.config.loader`). A certificate and its key are also loaded together
with `ssl.SSLContext.load_cert_chain`, exactly as the listener will, so a key
that does not belong to its certificate is caught here too. Relative paths
are relative to the working directory, as the gateway opens them.

Contract: a new field holding a path gets a line in `FILE_FIELDS` (a test
fails for a schema field named `*File`/`*Path` missing from it).
"""

from __future__ import annotations

import enum
import json
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from gateway.config.errors import ConfigIssue, Path, Severity, format_path
from gateway.config.field_paths import written_paths
from gateway.config.source import SourceMap


class FileKind(enum.Enum):
    """What a referenced file must contain."""

    CERTIFICATE = "a PEM certificate (chain)"
    PRIVATE_KEY = "a PEM private key"
    CA_BUNDLE = "PEM CA certificates"
    JWKS = "a JSON Web Key Set"
    KEY_LIST = "API key hashes, one per line"
    GEOIP_DATABASE = "a MaxMind-format (.mmdb) database"


FILE_FIELDS: Final[dict[str, FileKind]] = {
    "listeners[].tls.certificates[].certFile": FileKind.CERTIFICATE,
    "listeners[].tls.certificates[].keyFile": FileKind.PRIVATE_KEY,
    "listeners[].tls.clientCaFile": FileKind.CA_BUNDLE,
    "backends[].tlsValidation.caFile": FileKind.CA_BUNDLE,
    "routes[].auth.apiKey.keysFile": FileKind.KEY_LIST,
    "routes[].auth.jwt.jwksFile": FileKind.JWKS,
    "routes[].access.geoipDatabase": FileKind.GEOIP_DATABASE,
    "listeners[].access.geoipDatabase": FileKind.GEOIP_DATABASE,
}

CERTIFICATE_PAIRS: Final = ("listeners[].tls.certificates[]", "certFile", "keyFile")


@dataclass(frozen=True, slots=True)
class _Found:
    path: Path
    name: str
    problem: str | None


def check_referenced_files(data: Any, positions: SourceMap, filename: str) -> list[ConfigIssue]:
    """One error per referenced file that is missing, unreadable or not what it must be."""
    issues: list[ConfigIssue] = []

    def report(path: Path, message: str) -> None:
        line, column = positions.value_at(path)
        issues.append(
            ConfigIssue(filename, line + 1, column + 1, format_path(path), message, Severity.ERROR)
        )

    bad: set[Path] = set()
    for found in _referenced(data):
        if found.problem is not None:
            report(found.path, found.problem)
            bad.add(found.path)
    block, cert_key, key_key = CERTIFICATE_PAIRS
    for path in written_paths(data, block):
        item = _at(data, path)
        cert, key = item.get(cert_key), item.get(key_key)
        cert_path, key_path = (*path, cert_key), (*path, key_key)
        if not (isinstance(cert, str) and isinstance(key, str)):
            continue
        if cert_path in bad or key_path in bad:
            continue
        problem = _pair_problem(cert, key)
        if problem is not None:
            report(key_path, problem)
    return issues


def _referenced(data: Any) -> Iterator[_Found]:
    for pattern, kind in FILE_FIELDS.items():
        for path in written_paths(data, pattern):
            name = _at(data, path)
            if isinstance(name, str):  # other types: the shape check reports them
                yield _Found(path, name, file_problem(name, kind))


def _at(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data


def file_problem(name: str, kind: FileKind) -> str | None:
    """Why the file at `name` cannot serve as `kind`, naming the file; None when it can."""
    try:
        with open(name, "rb") as handle:
            if kind is FileKind.GEOIP_DATABASE:  # tens of MB: its metadata sits at the end
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - MMDB_TAIL_BYTES))
            content = handle.read()
    except OSError as exc:
        return f"cannot read {name!r}: {exc.strerror or exc}"
    problem = _content_problem(content, kind)
    return f"{name!r} is not {kind.value}: {problem}" if problem else None


MMDB_METADATA_MARKER: Final = b"\xab\xcd\xefMaxMind.com"
MMDB_TAIL_BYTES: Final = 128 * 1024


def _content_problem(content: bytes, kind: FileKind) -> str | None:
    if kind is FileKind.GEOIP_DATABASE:
        if MMDB_METADATA_MARKER not in content:
            return "no MaxMind metadata section (the file is not an .mmdb database)"
        return None
    text = content.decode("utf-8", "replace")
    if kind is FileKind.CERTIFICATE or kind is FileKind.CA_BUNDLE:
        if "-----BEGIN CERTIFICATE-----" not in text:
            return "no '-----BEGIN CERTIFICATE-----' block"
        try:
            ssl.create_default_context(cadata=text)
        except (ssl.SSLError, ValueError) as exc:
            return _ssl_reason(exc)
        return None
    if kind is FileKind.PRIVATE_KEY:
        if "PRIVATE KEY-----" not in text:
            return "no '-----BEGIN ... PRIVATE KEY-----' block"
        return None
    if kind is FileKind.JWKS:
        try:
            document = json.loads(text)
        except ValueError as exc:
            return f"JSON syntax error: {exc}"
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            return "a JWKS is a JSON object with a 'keys' list"
        return None
    return _key_list_problem(text)


_SHA256_HEX = re.compile(r"^[0-9A-Fa-f]{64}$")


def _key_list_problem(text: str) -> str | None:
    """Lines `ID SHA256HEX` or `SHA256HEX`, `#` comments (as the auth filter reads them)."""
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) > 2 or not _SHA256_HEX.match(words[-1]):
            return f"line {number} is not 'ID SHA256HEX' or 'SHA256HEX'"
        count += 1
    return None if count else "the file holds no keys"


def _pair_problem(cert: str, key: str) -> str | None:
    """Load the pair as the listener will; a mismatch or an unusable key is named."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            return f"the private key in {key!r} does not belong to the certificate in {cert!r}"
        return f"cannot load {key!r} with certificate {cert!r}: {_ssl_reason(exc)}"
    except OSError as exc:
        return f"cannot load {key!r} with certificate {cert!r}: {exc.strerror or exc}"
    return None


def _ssl_reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason).lower().replace("_", " ") if reason else str(exc)
