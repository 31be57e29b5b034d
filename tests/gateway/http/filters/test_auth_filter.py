"""Authentication as plain values: API keys by hash, JWTs (HS256/RS256/ES256) from a JWKS file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.config.access import ApiKey, ApiKeyAuth, Auth, ClaimHeader, JwtAuth
from gateway.http.exchange import Exchange
from gateway.http.filters import auth as auth_module
from gateway.http.filters.auth import AuthFilter, auth_filter, refresh_jwks
from gateway.routing.facts import RequestFacts

ISSUER = "https://id.example.test"
SECRET = b"s3cret-hmac-key-of-32-bytes-long!"
FACTS = RequestFacts("GET", "h", "/")


class Keys:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(RSAAlgorithm.to_jwk(self.rsa.public_key()))
        ec_jwk = json.loads(ECAlgorithm.to_jwk(self.ec.public_key()))
        oct_jwk = {"kty": "oct", "k": base64.urlsafe_b64encode(SECRET).rstrip(b"=").decode()}
        return {
            "keys": [
                {**rsa_jwk, "kid": "r1", "alg": "RS256"},
                {**ec_jwk, "kid": "e1", "alg": "ES256"},
                {**oct_jwk, "kid": "h1", "alg": "HS256"},
            ]
        }


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def token(keys: Keys, alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": "api", "sub": "alice", "exp": now + 60, "nbf": now - 1, **claims}
    signing: Any = {"RS256": keys.rsa, "ES256": keys.ec, "HS256": SECRET}[alg]
    kid = {"RS256": "r1", "ES256": "e1", "HS256": "h1"}[alg]
    return jwt.encode({k: v for k, v in body.items() if v is not None}, signing, alg, {"kid": kid})


def jwt_filter(keys: Keys, tmp_path: Path, **extra: Any) -> AuthFilter:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks()))
    config = JwtAuth(
        issuer=ISSUER,
        jwks_file=str(jwks),
        audiences=("api",),
        algorithms=("RS256", "ES256", "HS256"),
        clock_skew_s=5.0,
        claim_headers=(ClaimHeader("scope", "x-scope"),),
    )
    return auth_filter(Auth(jwt=config, **extra))


def request(*headers: tuple[bytes, bytes], query: bytes = b"") -> Exchange:
    return Exchange(b"GET", b"/", query, "1.1", b"h", list(headers), b"", None)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "HS256"])
def test_valid_jwt_passes_without_the_token_and_with_the_identity(
    keys: Keys, tmp_path: Path, alg: str
) -> None:
    auth = jwt_filter(keys, tmp_path)
    ex = request(
        (b"Authorization", b"Bearer " + token(keys, alg, scope="read").encode()),
        (b"X-Portway-Identity", b"forged"),
        (b"Accept", b"*/*"),
    )
    assert auth.on_request(ex, FACTS, 0.0) is None
    assert ex.headers == [
        (b"Accept", b"*/*"),
        (b"x-portway-identity", b"alice"),
        (b"x-scope", b"read"),
    ]


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://evil.test"},
        {"aud": "other"},
        {"exp": int(time.time()) - 600},
        {"nbf": int(time.time()) + 600},
        {"exp": None},
    ],
    ids=["issuer", "audience", "expired", "not_yet_valid", "no_exp"],
)
def test_jwt_with_a_bad_claim_is_refused_with_invalid_token(
    keys: Keys, tmp_path: Path, claims: dict[str, Any]
) -> None:
    auth = jwt_filter(keys, tmp_path)
    ex = request((b"Authorization", b"Bearer " + token(keys, **claims).encode()))
    answer = auth.on_request(ex, FACTS, 0.0)
    assert answer is not None and answer.status == 401 and answer.cause == "auth"
    assert (b"www-authenticate", b'Bearer realm="portway", error="invalid_token"') in answer.headers


def test_clock_skew_tolerates_a_token_just_expired(keys: Keys, tmp_path: Path) -> None:
    auth = jwt_filter(keys, tmp_path)
    ex = request((b"Authorization", b"Bearer " + token(keys, exp=int(time.time()) - 2).encode()))
    assert auth.on_request(ex, FACTS, 0.0) is None


def test_hmac_token_signed_with_the_public_rsa_key_is_refused(keys: Keys, tmp_path: Path) -> None:
    public_pem = keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = {"iss": ISSUER, "aud": "api", "sub": "mallory", "exp": int(time.time()) + 60}
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"r1","typ":"JWT"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=")
    sig = hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()
    forged = header + b"." + payload + b"." + base64.urlsafe_b64encode(sig).rstrip(b"=")
    auth = jwt_filter(keys, tmp_path)
    answer = auth.on_request(request((b"Authorization", b"Bearer " + forged)), FACTS, 0.0)
    assert answer is not None and answer.status == 401


def test_missing_credentials_get_a_challenge_without_error(keys: Keys, tmp_path: Path) -> None:
    answer = jwt_filter(keys, tmp_path).on_request(request(), FACTS, 0.0)
    assert answer is not None and answer.status == 401
    assert (b"www-authenticate", b'Bearer realm="portway"') in answer.headers


def test_jwks_file_is_reloaded_when_it_changes(keys: Keys, tmp_path: Path) -> None:
    auth = jwt_filter(keys, tmp_path)
    other = Keys()
    tok = token(other)
    assert auth.on_request(request((b"Authorization", b"Bearer " + tok.encode())), FACTS, 0.0)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(other.jwks()))
    os.utime(jwks, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    refresh_jwks()
    ex = request((b"Authorization", b"Bearer " + tok.encode()))
    assert auth.on_request(ex, FACTS, 0.0) is None
    jwks.write_text("{ broken")
    os.utime(jwks, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
    refresh_jwks()  # keeps the last good keys
    assert (
        auth.on_request(request((b"Authorization", b"Bearer " + tok.encode())), FACTS, 0.0) is None
    )


def api_key_filter(tmp_path: Path) -> AuthFilter:
    listed = tmp_path / "keys.txt"
    listed.write_text(f"# team keys\nbatch {hashlib.sha256(b'k-batch').hexdigest()}\n")
    config = ApiKeyAuth(
        query_param="api_key",
        keys_file=str(listed),
        keys=(ApiKey(id="billing", sha256=hashlib.sha256(b"k-billing").hexdigest()),),
    )
    return auth_filter(Auth(api_key=config))


def test_api_key_from_header_or_query_is_checked_by_hash_and_stripped(tmp_path: Path) -> None:
    auth = api_key_filter(tmp_path)
    ex = request((b"X-Api-Key", b"k-billing"), (b"Accept", b"*/*"))
    assert auth.on_request(ex, FACTS, 0.0) is None
    assert ex.headers == [(b"Accept", b"*/*"), (b"x-portway-identity", b"billing")]
    ex = request(query=b"a=1&api_key=k%2Dbatch&b=2")
    assert auth.on_request(ex, FACTS, 0.0) is None
    assert ex.query == b"a=1&b=2"
    assert ex.headers == [(b"x-portway-identity", b"batch")]


def test_wrong_or_missing_api_key_is_refused(tmp_path: Path) -> None:
    auth = api_key_filter(tmp_path)
    for ex in (request((b"X-Api-Key", b"k-wrong")), request(query=b"api_key=nope"), request()):
        answer = auth.on_request(ex, FACTS, 0.0)
        assert answer is not None and answer.status == 401
        assert (b"www-authenticate", b'ApiKey realm="portway", header="x-api-key"') in (
            answer.headers
        )


def test_identity_goes_up_in_the_configured_header_and_a_forged_one_is_dropped(
    tmp_path: Path,
) -> None:
    keys = ApiKeyAuth(keys=(ApiKey(id="ops", sha256=hashlib.sha256(b"k").hexdigest()),))
    auth = auth_filter(Auth(api_key=keys, identity_header="X-User"))
    ex = request((b"X-Api-Key", b"k"), (b"x-user", b"root"), (b"X-Portway-Identity", b"kept"))
    assert auth.on_request(ex, FACTS, 0.0) is None
    assert ex.headers == [(b"X-Portway-Identity", b"kept"), (b"X-User", b"ops")]


def bearer(tok: str) -> Exchange:
    return request((b"Authorization", b"Bearer " + tok.encode()))


def test_a_verified_token_is_not_checked_again_until_it_expires(keys: Keys, tmp_path: Path) -> None:
    """A signature check costs 40-80 us: a client's next requests with the same token are
    answered from memory, as long as the clock (with the skew) still admits the token."""
    auth = jwt_filter(keys, tmp_path)  # clock skew 5 s
    verifier = auth.verifier
    assert verifier is not None
    now = int(time.time())
    tok = token(keys, "HS256", exp=now + 60, nbf=None)
    for _ in range(3):
        assert auth.on_request(bearer(tok), FACTS, 0.0) is None
    assert verifier.checks == 1
    verifier.clock = lambda: now + 60 + 4.9  # expired, within the skew
    assert auth.on_request(bearer(tok), FACTS, 0.0) is None
    assert verifier.checks == 1
    verifier.clock = lambda: now + 60 + 5.0  # past exp + skew: not answered from memory
    # checked in full again (jwt.decode reads the real clock, by which the token is valid)
    assert auth.on_request(bearer(tok), FACTS, 0.0) is None
    assert verifier.checks == 2


def test_a_remembered_token_is_refused_at_once_when_its_key_leaves_the_jwks(
    keys: Keys, tmp_path: Path
) -> None:
    auth = jwt_filter(keys, tmp_path)
    tok = token(keys, "RS256")
    assert auth.on_request(bearer(tok), FACTS, 0.0) is None
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(Keys().jwks()))  # rotated: the old keys are gone
    os.utime(jwks, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    refresh_jwks()
    answer = auth.on_request(bearer(tok), FACTS, 0.0)
    assert answer is not None and answer.status == 401


def test_a_token_not_yet_valid_is_refused_even_after_a_valid_one_was_remembered(
    keys: Keys, tmp_path: Path
) -> None:
    """Only verified tokens are remembered, each under its own text."""
    auth = jwt_filter(keys, tmp_path)
    assert auth.on_request(bearer(token(keys, "ES256")), FACTS, 0.0) is None
    later = token(keys, "ES256", nbf=int(time.time()) + 600)
    for _ in range(2):
        answer = auth.on_request(bearer(later), FACTS, 0.0)
        assert answer is not None and answer.status == 401


@given(st.one_of(st.text(), st.integers(), st.lists(st.text(max_size=5), max_size=3)))
def test_a_claim_becomes_a_header_value_without_control_characters(claim: object) -> None:
    value = auth_module._header_value(claim)
    text = claim if isinstance(claim, str) else json.dumps(claim, separators=(",", ":"))
    assert value == "".join(c if " " <= c != "\x7f" else "?" for c in text).encode("utf-8")
    assert not any(b < 0x20 or b == 0x7F for b in value)
