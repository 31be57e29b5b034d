"""Upstream TLS is verified: against the configured CA bundle and name, else the system's.

A real HTTPS upstream (aiohttp with a trustme certificate) behind a real gateway.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from gateway.config.model import Backend
from tests.gateway.conftest import GatewayFactory

NAME = "api.internal.test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def https_upstream(ca: trustme.CA) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/", lambda _: web.Response(text="secret"))  # type: ignore[arg-type,return-value]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(NAME).configure_cert(ctx)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await runner.cleanup()


def config(port: int, validation: dict[str, Any] | None) -> dict[str, Any]:
    backend: dict[str, Any] = {
        "name": "app",
        "tls": True,
        "endpoints": [{"address": "127.0.0.1", "port": port}],
    }
    if validation is not None:
        backend["tlsValidation"] = validation
    return {
        "listeners": [{"name": "web", "protocol": "HTTP", "port": 1}],
        "backends": [backend],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "app"}]}]}],
    }


async def status_through(make_gateway: GatewayFactory, raw: dict[str, Any]) -> int:
    gw = await make_gateway(raw)
    async with aiohttp.ClientSession() as session, session.get(gw.url("/")) as resp:
        await resp.read()
        return resp.status


async def test_upstream_certificate_signed_by_the_configured_ca_for_the_configured_name_passes(
    make_gateway: GatewayFactory, https_upstream: int, ca: trustme.CA, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    raw = config(https_upstream, {"caFile": str(ca_file), "hostname": NAME})
    assert await status_through(make_gateway, raw) == 200


@pytest.mark.parametrize(
    "validation",
    [None, {"hostname": NAME}, {"caFile": "CA", "hostname": "other.test"}, {"caFile": "CA"}],
    ids=["system_cas", "system_cas_with_name", "wrong_name", "ip_not_in_certificate"],
)
async def test_unverifiable_upstream_certificate_is_refused(
    make_gateway: GatewayFactory,
    https_upstream: int,
    ca: trustme.CA,
    tmp_path: Path,
    validation: dict[str, Any] | None,
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    if validation is not None and validation.get("caFile") == "CA":
        validation = {**validation, "caFile": str(ca_file)}
    assert await status_through(make_gateway, config(https_upstream, validation)) == 503


async def test_verification_is_off_only_when_written_out(
    make_gateway: GatewayFactory, https_upstream: int, caplog: pytest.LogCaptureFixture
) -> None:
    raw = config(https_upstream, {"insecureSkipVerify": True})
    assert await status_through(make_gateway, raw) == 200
    assert "NOT verified" in caplog.text


def test_tls_validation_without_tls_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="tlsValidation needs tls: true"):
        TypeAdapter(Backend).validate_python(
            {"name": "b", "tlsValidation": {"hostname": NAME}, "endpoints": []}
        )
