"""API keys as the gateway holds them: SHA-256 digests of the keys, by key id.

Read when a table is compiled (`http.filters.auth.auth_filter`), never per
request: the config's `keys` and the lines of its `keysFile`, each checked as
an `ApiKey` (an id and a 64-hex-digit digest), the file read again only when it
changed. Kept out of the compiled hot path: it builds config values, whose
constructors the isolated mypyc build cannot type (see `setup.py`).
"""

from __future__ import annotations

from typing import Final

from gateway.config.access import ApiKey, ApiKeyAuth
from gateway.file_stamp import FileStamp, file_stamp


def api_key_digests(config: ApiKeyAuth) -> dict[str, str]:
    """SHA-256 hex digest → key id, from the config and its `keysFile`."""
    keys: list[ApiKey] = list(config.keys)
    if config.keys_file:
        with open(config.keys_file, encoding="utf-8") as handle:
            for line in handle:
                words = line.split("#", 1)[0].split()
                if len(words) == 1:
                    keys.append(ApiKey(id=words[0][:12].lower(), sha256=words[0]))
                elif len(words) == 2:
                    keys.append(ApiKey(id=words[0], sha256=words[1]))
                elif words:
                    raise ValueError(f"{config.keys_file}: a line is 'ID SHA256HEX' or 'SHA256HEX'")
    return {key.sha256.lower(): key.id for key in keys}


_API_KEYS: Final[dict[ApiKeyAuth, tuple[FileStamp | None, dict[str, str]]]] = {}


def key_digests(config: ApiKeyAuth) -> dict[str, str]:
    """`api_key_digests`, the key file read again only when it changed (tables compile often)."""
    stamp = file_stamp(config.keys_file) if config.keys_file else None
    found = _API_KEYS.get(config)
    if found is None or found[0] != stamp:
        if len(_API_KEYS) > 1024:
            _API_KEYS.clear()
        found = _API_KEYS[config] = (stamp, api_key_digests(config))
    return found[1]
