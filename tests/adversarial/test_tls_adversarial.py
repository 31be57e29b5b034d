"""TLS at the edge, adversarially: old protocol versions and a Host the connection's
certificate does not serve (RFC 9110 7.4: 421), on a real HTTPS listener."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import trustme

from gateway.runtime.tls import MOZILLA_INTERMEDIATE_CIPHERS
from tests.gateway.conftest import GatewayFactory, Upstream
from tests.gateway.runtime.test_tls_lifecycle import (
    A,
    B,
    client_context,
    get,
    https_config,
    write_cert,
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_host_served_by_another_certificate_than_the_sni_gets_421(
    make_gateway: GatewayFactory, upstream: Upstream, ca: trustme.CA, tmp_path: Path
) -> None:
    a_cert, a_key = write_cert(tmp_path, "a", ca.issue_cert(A, "*.wild.test"))
    b_cert, b_key = write_cert(tmp_path, "b", ca.issue_cert(B))
    gw = await make_gateway(
        https_config(
            upstream.port,
            [
                {"certFile": a_cert, "keyFile": a_key, "hostnames": [A, "*.wild.test"]},
                {"certFile": b_cert, "keyFile": b_key, "hostnames": [B]},
            ],
        )
    )
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.port, ssl=client_context(ca), server_hostname=A
    )
    assert (await get(reader, writer, A))[0] == 200
    assert (await get(reader, writer, "x.wild.test"))[0] == 200  # the same certificate
    status, body = await get(reader, writer, B)
    assert status == 421
    assert b"misdirected_request" in body
    writer.close()


async def test_tls_1_0_and_1_1_clients_are_refused_in_the_handshake(
    make_gateway: GatewayFactory, upstream: Upstream, ca: trustme.CA, tmp_path: Path
) -> None:
    cert_file, key_file = write_cert(tmp_path, "a", ca.issue_cert(A))
    gw = await make_gateway(
        https_config(upstream.port, [{"certFile": cert_file, "keyFile": key_file}])
    )
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    permissive.minimum_version = ssl.TLSVersion.TLSv1
    permissive.load_cert_chain(cert_file, key_file)
    control = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=permissive)
    control_port = control.sockets[0].getsockname()[1]
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        old = client_context(ca)
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        old.minimum_version = version
        old.maximum_version = version
        # the client can speak it (a permissive server accepts it) ...
        _, w = await asyncio.open_connection("127.0.0.1", control_port, ssl=old, server_hostname=A)
        assert w.get_extra_info("ssl_object").version() in ("TLSv1", "TLSv1.1")
        w.close()
        # ... and the gateway refuses it in the handshake
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await asyncio.open_connection("127.0.0.1", gw.port, ssl=old, server_hostname=A)
    control.close()
    tls12 = client_context(ca)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    _, writer = await asyncio.open_connection("127.0.0.1", gw.port, ssl=tls12, server_hostname=A)
    cipher = writer.get_extra_info("cipher")[0]
    assert cipher in MOZILLA_INTERMEDIATE_CIPHERS.split(":")
    assert writer.get_extra_info("ssl_object").selected_alpn_protocol() is None
    writer.close()
