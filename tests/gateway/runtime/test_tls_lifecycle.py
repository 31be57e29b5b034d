"""HTTPS listeners: certificate rotation without dropped connections, expiry, 421, mTLS, versions.

Real TLS on loopback: trustme CAs, certificate files on disk, a real gateway
listener, aiohttp upstreams that echo what they received.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from pydantic import TypeAdapter, ValidationError

from gateway.config.model import Certificate, GatewayConfig, ListenerTls
from gateway.ops.metrics import MetricsSnapshot, RequestStats, render
from gateway.runtime.tls import ServerTls
from tests.gateway.conftest import GatewayFactory, Upstream

A = "a.example.test"
B = "b.example.test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def write_cert(tmp: Path, stem: str, cert: trustme.LeafCert) -> tuple[str, str]:
    cert_file, key_file = tmp / f"{stem}.crt", tmp / f"{stem}.key"
    cert.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return str(cert_file), str(key_file)


def https_config(port: int, certificates: list[dict[str, Any]], **tls: Any) -> dict[str, Any]:
    return {
        "listeners": [
            {
                "name": "web",
                "protocol": "HTTPS",
                "port": 1,
                "tls": {"certificates": certificates, **tls},
            }
        ],
        "backends": [{"name": "app", "endpoints": [{"address": "127.0.0.1", "port": port}]}],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "app"}]}]}],
    }


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, extra: bytes = b""
) -> tuple[int, bytes]:
    """One keep-alive GET /echo; returns (status, body)."""
    writer.write(b"GET /echo HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" + extra + b"\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await asyncio.wait_for(reader.readexactly(length), 3)


def served_serial(writer: asyncio.StreamWriter) -> int:
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


async def test_rotated_certificate_is_served_to_new_connections_and_open_ones_keep_working(
    make_gateway: GatewayFactory, upstream: Upstream, ca: trustme.CA, tmp_path: Path
) -> None:
    cert_file, key_file = write_cert(tmp_path, "a", ca.issue_cert(A))
    gw = await make_gateway(
        https_config(upstream.port, [{"certFile": cert_file, "keyFile": key_file}])
    )
    client = client_context(ca)
    r1, w1 = await asyncio.open_connection("127.0.0.1", gw.port, ssl=client, server_hostname=A)
    assert (await get(r1, w1, A))[0] == 200
    old = served_serial(w1)

    write_cert(tmp_path, "a", ca.issue_cert(A))  # rotated in place
    assert gw.server_tls["web"].reload()

    r2, w2 = await asyncio.open_connection("127.0.0.1", gw.port, ssl=client, server_hostname=A)
    assert (await get(r2, w2, A))[0] == 200
    assert served_serial(w2) != old
    assert (await get(r1, w1, A))[0] == 200  # the connection opened before still serves
    for w in (w1, w2):
        w.close()


async def test_a_broken_certificate_file_keeps_the_current_certificate(
    make_gateway: GatewayFactory, upstream: Upstream, ca: trustme.CA, tmp_path: Path
) -> None:
    cert_file, key_file = write_cert(tmp_path, "a", ca.issue_cert(A))
    gw = await make_gateway(
        https_config(upstream.port, [{"certFile": cert_file, "keyFile": key_file}])
    )
    tls = gw.server_tls["web"]
    Path(cert_file).write_text("not a certificate")
    assert not tls.reload()
    assert tls.reload_failures == 1
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.port, ssl=client_context(ca), server_hostname=A
    )
    assert (await get(reader, writer, A))[0] == 200
    writer.close()


async def test_worker_polls_certificate_files_and_reloads_on_change(
    ca: trustme.CA, tmp_path: Path, unused_tcp_port_factory: Any
) -> None:
    from gateway.runtime.file_watch import poll_credential_files
    from gateway.runtime.process import ServerOptions
    from gateway.runtime.server import Worker

    cert_file, key_file = write_cert(tmp_path, "a", ca.issue_cert(A))
    config = https_config(1, [{"certFile": cert_file, "keyFile": key_file}])
    config["listeners"][0]["port"] = unused_tcp_port_factory()
    config["admin"] = {"port": unused_tcp_port_factory()}
    path = tmp_path / "gw.yaml"
    path.write_text(json.dumps(config))
    worker = Worker(ServerOptions(str(path)), serve_admin=False)
    await worker.start()
    try:
        assert worker.ctx is not None
        tls = worker.server_tls["web"]
        stop = asyncio.Event()
        watch = asyncio.create_task(poll_credential_files(worker.server_tls, stop, 0.02))
        await asyncio.sleep(0.1)
        write_cert(tmp_path, "a", ca.issue_cert(A))
        for _ in range(100):
            if tls.reloads:
                break
            await asyncio.sleep(0.02)
        assert tls.reloads >= 1
        before = tls.reloads
        worker.reload()  # SIGHUP reloads certificates too, even when the config is unchanged
        assert tls.reloads == before + 1
        report = worker.reporting.report()
        assert report["tls"][0]["cert_file"] == cert_file
        assert report["tls"][0]["days_left"] > 0
        stop.set()
        await asyncio.wait_for(watch, timeout=1)  # the poller ends when told to stop
    finally:
        worker.request_stop()
        await worker.drain(0.1)


def test_expiry_is_reported_in_seconds_and_days(ca: trustme.CA, tmp_path: Path) -> None:
    not_after = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    cert_file, key_file = write_cert(tmp_path, "a", ca.issue_cert(A, not_after=not_after))
    tls = ServerTls("web", ListenerTls(certificates=(Certificate(cert_file, key_file),)))
    now = not_after.timestamp() - 10 * 86400
    status = tls.status[0]
    assert status.expires_in_s(now) == pytest.approx(10 * 86400)
    assert status.as_json(now)["days_left"] == 10.0
    snap = MetricsSnapshot.capture(RequestStats(), tls_expiry={("web", cert_file): 864000.0})
    text = render(MetricsSnapshot.from_json(json.loads(json.dumps(snap.to_json())))).decode()
    labels = f'{{cert_file="{cert_file}",listener="web"}}'
    assert f"portway_tls_certificate_expiry_seconds{labels} 864000.0" in text


async def test_alpn_offers_http_1_1(
    make_gateway: GatewayFactory, upstream: Upstream, ca: trustme.CA, tmp_path: Path
) -> None:
    cert_file, key_file = write_cert(tmp_path, "a", ca.issue_cert(A))
    gw = await make_gateway(
        https_config(upstream.port, [{"certFile": cert_file, "keyFile": key_file}])
    )
    client = client_context(ca)
    client.set_alpn_protocols(["h2", "http/1.1"])
    _, writer = await asyncio.open_connection("127.0.0.1", gw.port, ssl=client, server_hostname=A)
    assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
    writer.close()


async def test_mtls_passes_the_verified_subject_upstream_and_drops_a_forged_one(
    make_gateway: GatewayFactory, upstream: Upstream, ca: trustme.CA, tmp_path: Path
) -> None:
    cert_file, key_file = write_cert(tmp_path, "a", ca.issue_cert(A))
    client_ca = trustme.CA()
    ca_file = tmp_path / "clients.pem"
    client_ca.cert_pem.write_to_path(str(ca_file))
    gw = await make_gateway(
        https_config(
            upstream.port,
            [{"certFile": cert_file, "keyFile": key_file}],
            clientAuth="required",
            clientCaFile=str(ca_file),
            clientSubjectHeader="X-Mtls-Subject",
        )
    )
    with_cert = client_context(ca)
    client_ca.issue_cert("client@example.test", common_name="billing").configure_cert(with_cert)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.port, ssl=with_cert, server_hostname=A
    )
    status, body = await get(reader, writer, A, b"X-Mtls-Subject: CN=admin\r\n")
    assert status == 200
    subjects = [v for k, v in json.loads(body)["headers"] if k.lower() == "x-mtls-subject"]
    assert len(subjects) == 1
    assert subjects[0].startswith("CN=billing,")
    writer.close()

    without = client_context(ca)
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", gw.port, ssl=without, server_hostname=A
        )
        # TLS 1.3: the refusal of a missing client certificate arrives after the handshake
        await get(reader, writer, A)


def test_proxy_protocol_on_an_https_listener_is_refused_as_not_supported_yet() -> None:
    raw = https_config(1, [{"certFile": "c.pem", "keyFile": "k.pem"}])
    raw["listeners"][0]["proxyProtocol"] = True
    with pytest.raises(ValidationError, match="not supported yet"):
        TypeAdapter(GatewayConfig).validate_python(raw)
