"""Access, auth and rate limits through a real gateway: refused requests never reach the upstream.

These are the tests that fail if the runtime ignores `access`, `auth` or
`rateLimit` (the fields left `gateway.config.unsupported` with them).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from gateway.ops.accesslog import AccessLog
from gateway.ops.observer import GatewayObserver
from tests.gateway.conftest import GatewayFactory, RawUpstream, raw_exchange, simple_config

API_KEY = "pk_live_7f3a9c1e5b2d4f60"
HMAC = b"jwt-hmac-secret-for-the-edge-tests!"


def route_config(
    port: int,
    *,
    route: dict[str, Any],
    rule: dict[str, Any] | None = None,
    gateway: dict[str, Any] | None = None,
) -> dict[str, Any]:
    raw = simple_config([port], rule=rule, gateway=gateway)
    raw["routes"][0].update(route)
    return raw


def get(path: str = "/", *headers: str) -> bytes:
    lines = "".join(h + "\r\n" for h in headers)
    return f"GET {path} HTTP/1.1\r\nHost: a\r\n{lines}Connection: close\r\n\r\n".encode()


def status(out: bytes) -> int:
    return int(out.split(b" ", 2)[1])


async def test_route_cidr_deny_answers_403_access_and_forwards_nothing(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    access = {"default": "deny", "rules": [{"action": "allow", "cidrs": ["10.0.0.0/8", "::1/128"]}]}
    gw = await make_gateway(route_config(raw_upstream.port, route={"access": access}))
    out = await raw_exchange(gw.port, get())
    assert status(out) == 403
    assert b"portway-error: access" in out
    assert raw_upstream.received == b""


async def test_route_cidr_allow_lets_loopback_through(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    access = {"default": "deny", "rules": [{"action": "allow", "cidrs": ["127.0.0.0/8"]}]}
    gw = await make_gateway(route_config(raw_upstream.port, route={"access": access}))
    assert status(await raw_exchange(gw.port, get())) == 200


async def test_spoofed_x_forwarded_for_from_an_untrusted_client_does_not_open_access(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    access = {"default": "deny", "rules": [{"action": "allow", "cidrs": ["203.0.113.0/24"]}]}
    gw = await make_gateway(route_config(raw_upstream.port, route={"access": access}))
    out = await raw_exchange(gw.port, get("/", "X-Forwarded-For: 203.0.113.7"))
    assert status(out) == 403
    assert raw_upstream.received == b""


async def test_trusted_proxy_x_forwarded_for_decides_access(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    access = {"default": "allow", "rules": [{"action": "deny", "cidrs": ["203.0.113.0/24"]}]}
    raw = route_config(
        raw_upstream.port, route={"access": access}, gateway={"trustedProxies": ["127.0.0.0/8"]}
    )
    gw = await make_gateway(raw)
    out = await raw_exchange(gw.port, get("/", "X-Forwarded-For: 198.51.100.1, 203.0.113.7"))
    assert status(out) == 403
    out = await raw_exchange(gw.port, get("/", "X-Forwarded-For: 203.0.113.7, 198.51.100.1"))
    assert status(out) == 200


def auth_route(tmp_path: Path) -> dict[str, Any]:
    oct_key = jwt.utils.base64url_encode(HMAC).decode()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "oct", "k": oct_key, "kid": "k1"}]}))
    return {
        "auth": {
            "apiKey": {
                "queryParam": "api_key",
                "keys": [{"id": "billing", "sha256": hashlib.sha256(API_KEY.encode()).hexdigest()}],
            },
            "jwt": {"issuer": "idp", "jwksFile": str(jwks), "algorithms": ["HS256"]},
        }
    }


def bearer(sub: str = "alice") -> str:
    claims = {"iss": "idp", "sub": sub, "exp": int(time.time()) + 60}
    return jwt.encode(claims, HMAC, "HS256", {"kid": "k1"})


async def test_missing_or_wrong_credentials_get_401_with_challenges_and_forward_nothing(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream, tmp_path: Path
) -> None:
    gw = await make_gateway(route_config(raw_upstream.port, route=auth_route(tmp_path)))
    for request in (get(), get("/", "X-Api-Key: nope"), get("/", "Authorization: Bearer x.y.z")):
        out = await raw_exchange(gw.port, request)
        assert status(out) == 401
        assert b'www-authenticate: Bearer realm="portway"' in out
        assert b'www-authenticate: ApiKey realm="portway"' in out
        assert b"portway-error: auth" in out
    assert raw_upstream.received == b""


async def test_accepted_credentials_are_stripped_and_the_identity_is_forwarded(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream, tmp_path: Path
) -> None:
    gw = await make_gateway(route_config(raw_upstream.port, route=auth_route(tmp_path)))
    out = await raw_exchange(gw.port, get("/p?x=1&api_key=" + API_KEY, "X-Portway-Identity: root"))
    assert status(out) == 200
    out = await raw_exchange(gw.port, get("/q", "Authorization: Bearer " + bearer()))
    assert status(out) == 200
    seen = bytes(raw_upstream.received)
    assert b"GET /p?x=1 HTTP/1.1" in seen
    assert b"x-portway-identity: billing" in seen
    assert b"x-portway-identity: alice" in seen
    assert b"X-Portway-Identity: root" not in seen
    assert API_KEY.encode() not in seen
    assert b"Bearer" not in seen


async def test_no_credential_reaches_the_access_log_or_a_log_line(
    make_gateway: GatewayFactory,
    raw_upstream: RawUpstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = await make_gateway(route_config(raw_upstream.port, route=auth_route(tmp_path)))
    log_file = tmp_path / "access.log"
    access_log = AccessLog.open(str(log_file))
    gw.ctx.observer = GatewayObserver(access_log=access_log)
    token = bearer()
    requests = [
        get("/a?api_key=" + API_KEY),
        get("/b", "X-Api-Key: " + API_KEY),
        get("/c", "Authorization: Bearer " + token),
        get("/d", "Authorization: Bearer " + token + "tampered"),
        get("/e?api_key=" + API_KEY + "wrong"),
    ]
    for request in requests:
        await raw_exchange(gw.port, request)
    assert access_log is not None
    access_log.close()
    text = log_file.read_text() + caplog.text
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(line["response_code"], line["response_flags"]) for line in lines] == [
        (200, ""),
        (200, ""),
        (200, ""),
        (401, "auth"),
        (401, "auth"),
    ]
    for secret in (API_KEY, token, token.split(".")[2], HMAC.decode()):
        assert secret not in text


async def test_rate_limit_answers_429_with_retry_after_and_forwards_nothing_past_the_limit(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    rule = {"rateLimit": {"requests": 2, "per": "10s"}}
    gw = await make_gateway(route_config(raw_upstream.port, route={}, rule=rule))
    outs = [await raw_exchange(gw.port, get()) for _ in range(4)]
    assert [status(o) for o in outs] == [200, 200, 429, 429]
    assert b"retry-after: " in outs[2] and b"ratelimit-limit: 2" in outs[2]
    assert b"portway-error: rate_limited" in outs[2]
    assert raw_upstream.received.count(b"GET / HTTP/1.1") == 2


async def test_expect_100_continue_is_not_answered_for_a_refused_request(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    access = {"default": "deny"}
    gw = await make_gateway(route_config(raw_upstream.port, route={"access": access}))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert head.startswith(b"HTTP/1.1 403 ")
    writer.close()
    assert raw_upstream.received == b""


@pytest.mark.e2e
async def test_a_real_gateway_process_enforces_access_auth_and_rate_limit_from_its_file(
    tmp_path: Path, raw_upstream: RawUpstream
) -> None:
    """The issue's scenario: a config with access, an API key and 1 request per 10 s."""
    from tests.gateway.runtime.test_server_e2e import Gateway, free_port

    port, admin = free_port(), free_port()
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    text = f"""\
version: 1
listeners:
  - {{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}
routes:
  - name: api
    access: {{default: deny, rules: [{{action: allow, cidrs: [127.0.0.0/8]}}]}}
    auth: {{apiKey: {{keys: [{{id: ops, sha256: {digest}}}]}}}}
    rules:
      - backendRefs: [{{name: app}}]
        rateLimit: {{requests: 1, per: 10s, key: identity}}
  - name: closed
    hostnames: [closed.test]
    access: {{default: deny}}
    rules:
      - backendRefs: [{{name: app}}]
backends:
  - name: app
    endpoints: [{{address: 127.0.0.1, port: {raw_upstream.port}}}]
admin: {{address: 127.0.0.1, port: {admin}}}
"""
    gateway = Gateway(tmp_path, text).start(admin)
    try:
        await gateway.wait_ready(port)
        no_key = [status(await raw_exchange(port, get())) for _ in range(5)]
        assert no_key == [401] * 5
        closed = await raw_exchange(
            port, get("/", "X-Api-Key: " + API_KEY).replace(b"Host: a", b"Host: closed.test")
        )
        assert status(closed) == 403
        keyed = [
            status(await raw_exchange(port, get("/", "X-Api-Key: " + API_KEY))) for _ in range(3)
        ]
        assert keyed == [200, 429, 429]
        assert raw_upstream.received.count(b"GET / HTTP/1.1") == 1
    finally:
        gateway.stop()
