"""The drill's CA: server certificates a client trusting only that CA accepts, by name or IP."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from portway.drill.certs import DrillCa, install, serial_of


async def handshake(ca: DrillCa, cert: Path, key: Path, server_hostname: str) -> int:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ca.client_context(), server_hostname=server_hostname
        )
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return serial_of(der)
    finally:
        server.close()


async def test_issued_certificates_verify_by_dns_name_and_by_ip(tmp_path: Path) -> None:
    ca = DrillCa()
    issued = ca.issue(("shop.drill.test", "127.0.0.1"))
    install(issued, tmp_path / "tls" / "a.crt", tmp_path / "tls" / "a.key")
    for name in ("shop.drill.test", "127.0.0.1"):
        serial = await handshake(ca, tmp_path / "tls" / "a.crt", tmp_path / "tls" / "a.key", name)
        assert serial == issued.serial


async def test_a_renewed_certificate_has_a_new_serial_and_key(tmp_path: Path) -> None:
    ca = DrillCa()
    first, second = ca.issue(("shop.drill.test",)), ca.issue(("shop.drill.test",))
    assert first.serial != second.serial and first.key_pem != second.key_pem
    install(second, tmp_path / "a.crt", tmp_path / "a.key")
    assert await handshake(ca, tmp_path / "a.crt", tmp_path / "a.key", "shop.drill.test") == (
        second.serial
    )
