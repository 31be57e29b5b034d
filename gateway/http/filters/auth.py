"""Authentication filters: API keys and JWTs, the credential stripped, the identity passed on.

Theory of operation. `AuthFilter` (`FilterStage.AUTH`) looks for the
credentials its route accepts: an API key in a header or a query parameter,
a Bearer JWT in `Authorization`. A request with none, or with one that does
not verify, is answered `401` with a `WWW-Authenticate` challenge per scheme
(RFC 9110 11.6.1; RFC 6750 for Bearer) and `portway-error: auth`; nothing is
forwarded. An accepted request goes on without its credential (header
removed, query parameter cut out of the target) and with the identity in the
configured headers; headers of those names sent by the client are removed
first, so an identity cannot be forged.

API keys are held as SHA-256 digests (config `keys[].sha256`, `keysFile`):
the gateway hashes what the client sent and looks the digest up, and never
holds a key. JWTs verify against a JWKS file (`JwksKeys`): HS256 (`oct`
keys), RS256 (`RSA`), ES256 (`EC`), the key type always matching the
token's algorithm (no HMAC-with-a-public-key confusion); `iss`, `aud`,
`exp` and `nbf` are checked with the configured clock skew. The JWKS file is
re-read when it changes: `refresh_jwks()` is polled by the worker with the
certificate files (`runtime.file_watch.poll_credential_files`), never on a
request.

Secrets never reach a log line: no credential is put in an exception, a log
record or an answer; the access log's `path` is the one the client sent
minus the stripped parameter (the filter rewrites `ex.query` before the log
is finished, and the log records only the path).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote_to_bytes

import jwt
from jwt.types import Options
from mypy_extensions import mypyc_attr

from gateway.config.access import Auth, JwtAuth
from gateway.file_stamp import file_stamp
from gateway.http.filters.api_keys import key_digests
from gateway.http.filters.base import ExchangeView, FilterStage, LocalAnswer
from portway.bounded_memo import BoundedMemo

if TYPE_CHECKING:
    from gateway.routing.facts import RequestFacts

log = logging.getLogger("portway.gateway.http.filters.auth")

_KEY_TYPES: Final = {"HS": "oct", "RS": "RSA", "ES": "EC"}


@mypyc_attr(native_class=False)  # compiled: `_LIVE` holds them weakly
class JwksKeys:
    """The keys of a JWKS file, re-read when the file changes (`refresh`)."""

    __slots__ = ("__weakref__", "by_kid", "keys", "path", "stamp")

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: tuple[int, int, int] | None = None
        self.keys: tuple[jwt.PyJWK, ...] = ()
        self.by_kid: dict[str, jwt.PyJWK] = {}
        self.load()
        _LIVE.add(self)

    def load(self) -> None:
        """Read the file; raises (`OSError`, `ValueError`, `jwt.PyJWKError`) when unusable."""
        stamp = file_stamp(self.path)
        with open(self.path, encoding="utf-8") as handle:
            document = json.load(handle)
        keys = tuple(
            jwt.PyJWK(entry) for entry in document.get("keys", ()) if isinstance(entry, dict)
        )
        self.keys = keys
        self.by_kid = {k.key_id: k for k in keys if k.key_id}
        self.stamp = stamp

    def refresh(self) -> None:
        """Reload if the file changed; keep the current keys when the new file is unusable."""
        try:
            if file_stamp(self.path) == self.stamp:
                return
            self.load()
            log.info("JWKS reloaded", extra={"file": self.path, "keys": len(self.keys)})
        except (OSError, ValueError, jwt.PyJWKError, jwt.PyJWKSetError) as exc:
            log.error(
                "JWKS reload failed; keeping the current keys",
                extra={"file": self.path, "error": type(exc).__name__},
            )

    def candidates(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        """Keys that may have signed a token with this header: right type, kid if given."""
        kty = _KEY_TYPES.get(alg[:2])
        if kid is not None:
            found = self.by_kid.get(kid)
            pool: tuple[jwt.PyJWK, ...] = (found,) if found is not None else ()
        else:
            pool = self.keys
        return [k for k in pool if k.key_type == kty]


_LIVE: Final[weakref.WeakSet[JwksKeys]] = weakref.WeakSet()
_JWKS: Final[dict[str, JwksKeys]] = {}


def jwks_keys(path: str) -> JwksKeys:
    """The keys of `path`, one object per file shared by every rule naming it."""
    found = _JWKS.get(path)
    if found is None:
        found = _JWKS[path] = JwksKeys(path)
    else:
        found.refresh()
    return found


def refresh_jwks() -> None:
    """Re-read every JWKS file in use that changed (the worker polls this)."""
    for keys in list(_LIVE):
        keys.refresh()


VERIFIED_TOKENS: Final = 1024
"""Tokens a route's verifier remembers as verified (`JwtVerifier.verify`)."""


class JwtVerifier:
    """Checks one token against a `JwtAuth` block; returns its claims or None.

    A whole check costs 40-80 us a request (HS256, RS256, ES256 on this machine),
    and a client sends the same token with every request until it expires. So,
    as Envoy's JWT cache does, a token that verified is remembered with its
    claims (at most `VERIFIED_TOKENS`, all forgotten at once when full), and its
    next requests have only what `jwt.decode` checks that changes with time
    checked again: `exp` not passed, `nbf` and `iat` reached, with the same
    skew (~1 us a request). All of it is forgotten when the JWKS changes: a key
    removed stops its tokens at once. A refused token is never remembered.
    """

    __slots__ = (
        "algorithms",
        "audiences",
        "checks",
        "clock",
        "config",
        "keys",
        "keys_seen",
        "options",
        "verified",
    )

    def __init__(self, config: JwtAuth, keys: JwksKeys) -> None:
        self.config = config
        self.keys = keys
        self.algorithms = frozenset(config.algorithms)
        self.audiences = list(config.audiences) or None
        required = ["exp", "iss"] + (["aud"] if config.audiences else [])
        self.options: Options = {"require": required, "verify_aud": bool(config.audiences)}
        self.verified: BoundedMemo[str, tuple[dict[str, Any], int, int]] = BoundedMemo(
            VERIFIED_TOKENS
        )
        """token → (claims, not before, expiry) of the tokens that verified under `keys_seen`."""
        self.keys_seen = keys.keys
        self.checks = 0
        """Whole checks made (a remembered token's requests make none)."""
        self.clock: Callable[[], float] = time.time
        """The wall clock remembered tokens' `exp`, `nbf` and `iat` are held against."""

    def verify(self, token: str) -> dict[str, Any] | None:
        if self.keys.keys is not self.keys_seen:
            self.verified = BoundedMemo(VERIFIED_TOKENS)
            self.keys_seen = self.keys.keys
        known = self.verified.get(token)
        if known is not None:
            claims, start, exp = known
            now, skew = self.clock(), self.config.clock_skew_s
            if start - skew <= now < exp + skew:  # as jwt.decode checks nbf, iat and exp
                return claims
        found = self._verify(token)
        if found is not None:
            starts = [int(found[name]) for name in ("nbf", "iat") if name in found]
            self.verified.put(token, (found, max(starts, default=0), int(found["exp"])))
        return found

    def _verify(self, token: str) -> dict[str, Any] | None:
        """The whole check: header, algorithm, signature under the JWKS keys, claims."""
        self.checks += 1
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            return None
        kid = header.get("kid")
        for key in self.keys.candidates(kid if isinstance(kid, str) else None, alg):
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key=key.key,
                    algorithms=[alg],
                    audience=self.audiences,
                    issuer=self.config.issuer,
                    leeway=self.config.clock_skew_s,
                    options=self.options,
                )
            except jwt.PyJWTError:
                continue
            return claims
        return None


def _header_value(value: object) -> bytes:
    """A claim as a header value: JSON unless a string, control characters as `?`."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if text.isprintable():  # no control character: the common case, one C call
        return text.encode("utf-8")
    return "".join(c if " " <= c != "\x7f" else "?" for c in text).encode("utf-8")


class AuthFilter:
    """A route's authentication (see module docstring)."""

    __slots__ = (
        "api_header",
        "api_keys",
        "api_param",
        "challenge",
        "claim_headers",
        "drop",
        "identity",
        "invalid",
        "verifier",
    )

    stage: Final = FilterStage.AUTH

    def __init__(
        self,
        config: Auth,
        *,
        api_keys: dict[str, str] | None = None,
        verifier: JwtVerifier | None = None,
    ) -> None:
        self.api_keys = api_keys
        self.api_header = config.api_key.header.lower().encode() if config.api_key else b""
        param = config.api_key.query_param if config.api_key else None
        self.api_param = param.encode() if param else b""
        self.verifier = verifier
        self.identity = config.identity_header.encode()
        self.claim_headers = tuple(
            (c.claim, c.header.encode()) for c in (config.jwt.claim_headers if config.jwt else ())
        )
        self.drop = frozenset({self.identity.lower()} | {h.lower() for _, h in self.claim_headers})
        challenges: list[tuple[bytes, bytes]] = []
        invalid: list[tuple[bytes, bytes]] = []
        if verifier is not None:
            challenges.append((b"www-authenticate", b'Bearer realm="portway"'))
            invalid.append((b"www-authenticate", b'Bearer realm="portway", error="invalid_token"'))
        if config.api_key is not None:
            key = (
                b"www-authenticate",
                b'ApiKey realm="portway", header="' + self.api_header + b'"',
            )
            challenges.append(key)
            invalid.append(key)
        self.challenge = _answer(challenges)
        self.invalid = _answer(invalid)

    def on_request(self, ex: ExchangeView, facts: RequestFacts, now: float) -> LocalAnswer | None:
        bearer: bytes | None = None
        key: bytes | None = None
        kept = []
        for name, value in ex.headers:
            lname = name.lower()
            if lname == b"authorization" and self.verifier is not None:
                scheme, _, rest = value.strip().partition(b" ")
                if scheme.lower() == b"bearer":
                    bearer = rest.strip()
                    continue
            elif lname == self.api_header and self.api_keys is not None:
                key = value.strip()
                continue
            elif lname in self.drop:
                continue
            kept.append((name, value))
        if key is None and self.api_param and self.api_keys is not None and ex.query:
            key, ex.query = _take_param(ex.query, self.api_param)
        identity: list[tuple[bytes, bytes]] | None = None
        if bearer is not None and self.verifier is not None:
            claims = self.verifier.verify(bearer.decode("latin-1"))
            if claims is not None:
                identity = [(self.identity, _header_value(claims.get("sub", "")))]
                for claim, header in self.claim_headers:
                    if claim in claims:
                        identity.append((header, _header_value(claims[claim])))
        if identity is None and key is not None and self.api_keys is not None:
            key_id = self.api_keys.get(hashlib.sha256(key).hexdigest())
            if key_id is not None:
                identity = [(self.identity, key_id.encode())]
        if identity is None:
            return self.invalid if bearer is not None or key is not None else self.challenge
        kept.extend(identity)
        ex.headers = kept
        return None


def _answer(challenges: list[tuple[bytes, bytes]]) -> LocalAnswer:
    headers = (
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"portway-error", b"auth"),
        *challenges,
    )
    return LocalAnswer(401, headers, b"portway: authentication required\n", "auth")


def _take_param(query: bytes, name: bytes) -> tuple[bytes | None, bytes]:
    """(value of the first `name=` parameter or None, the query without any `name` parameter)."""
    found: bytes | None = None
    kept = []
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == name:
            if found is None:
                found = value
            continue
        kept.append(part)
    if found is not None:
        found = unquote_to_bytes(found)
    return found, b"&".join(kept)


def auth_filter(config: Auth) -> AuthFilter:
    """Build a route's filter (table compile time): read the key list and the JWKS."""
    api_keys = key_digests(config.api_key) if config.api_key is not None else None
    verifier = None
    if config.jwt is not None:
        verifier = JwtVerifier(config.jwt, jwks_keys(config.jwt.jwks_file))
    return AuthFilter(config, api_keys=api_keys, verifier=verifier)
