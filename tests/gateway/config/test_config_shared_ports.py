"""Listeners sharing one address:port (Gateway API: told apart by hostname): which the
config check accepts, what it says about the others, and a real worker serving them on
one socket."""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
from pathlib import Path
from typing import Any

from gateway.config.loader import check_config_text, load_config_text
from gateway.config.ports import socket_groups
from gateway.runtime.process import ServerOptions
from gateway.runtime.server import Worker
from tests.gateway.conftest import Upstream


def issues(listeners: str) -> list[str]:
    body = "listeners:\n" + textwrap.indent(textwrap.dedent(listeners).strip("\n"), "  ") + "\n"
    return [str(issue) for issue in check_config_text(body, "cfg.yaml").issues]


def test_http_listeners_with_different_hostnames_share_a_port() -> None:
    text = """
    - {name: api, protocol: HTTP, port: 80, hostnames: [api.example.com]}
    - {name: shop, protocol: HTTP, port: 80, hostnames: ["*.example.com"]}
    - {name: rest, protocol: HTTP, port: 80}
    - {name: admin, protocol: HTTP, port: 81}
    """
    assert issues(text) == []
    config = load_config_text("listeners:\n" + textwrap.indent(textwrap.dedent(text), "  "))
    groups = socket_groups(config.listeners)
    assert {key: [lst.name for lst in group] for key, group in groups.items()} == {
        "127.0.0.1:80": ["api", "shop", "rest"],
        "admin": ["admin"],
    }


def test_listeners_on_one_port_must_be_told_apart_by_hostname() -> None:
    assert issues(
        """
        - {name: a, protocol: HTTP, port: 80}
        - {name: b, protocol: HTTP, port: 80}
        - {name: c, protocol: HTTP, port: 81, hostnames: [x.example.com]}
        - {name: d, protocol: HTTP, port: 81, hostnames: [y.example.com, X.example.com]}
        """
    ) == [
        "cfg.yaml:3:37: listeners[1].port: 127.0.0.1:80 is already used by listener 'a' "
        "(line 2); both take every hostname: give them `hostnames` to tell them apart",
        "cfg.yaml:5:37: listeners[3].port: 127.0.0.1:81 is already used by listener 'c' "
        "(line 4); both take hostname 'x.example.com'",
    ]


def test_only_http_or_only_https_listeners_share_a_port() -> None:
    found = issues(
        """
        - {name: a, protocol: HTTP, port: 80, hostnames: [a.example.com]}
        - {name: b, protocol: TCP, port: 80}
        - {name: c, protocol: TLS, port: 443, hostnames: [c.example.com]}
        - {name: d, protocol: TLS, port: 443, hostnames: [d.example.com]}
        """
    )
    assert len(found) == 2
    assert all("a TCP or TLS passthrough listener needs a port of its own" in f for f in found)
    assert found[0].startswith("cfg.yaml:3:36: listeners[1].port: 127.0.0.1:80 is already used")


def test_what_acts_before_the_first_request_must_agree_on_a_shared_port() -> None:
    found = issues(
        """
        - {name: a, protocol: HTTP, port: 80, hostnames: [a.example.com]}
        - name: b
          protocol: HTTP
          port: 80
          hostnames: [b.example.com]
          maxRequestBodyBytes: 10
        - {name: c, protocol: HTTP, port: 81, hostnames: [c.example.com], proxyProtocol: true}
        - {name: d, protocol: HTTP, port: 81, hostnames: [d.example.com]}
        """
    )
    assert len(found) == 2
    assert "listeners[1].port" in found[0]
    assert "must agree on `maxRequestBodyBytes`" in found[0]
    assert "not supported yet" in found[0]
    assert "listeners[3].port" in found[1] and "must agree on `proxyProtocol`" in found[1]


def test_a_wildcard_address_still_conflicts_with_a_specific_one() -> None:
    found = issues(
        """
        - {name: a, protocol: HTTP, port: 80, address: 0.0.0.0, hostnames: [a.example.com]}
        - {name: b, protocol: HTTP, port: 80, address: 10.1.1.1, hostnames: [b.example.com]}
        """
    )
    assert found == [
        "cfg.yaml:3:37: listeners[1].port: 10.1.1.1:80 is already used by listener 'a' (line 2)"
    ]


def _config(port: int, admin_port: int, upstream: Upstream, extra: bool = False) -> dict[str, Any]:
    listeners = [
        {"name": "api", "protocol": "HTTP", "port": port, "hostnames": ["api.example.test"]},
        {"name": "www", "protocol": "HTTP", "port": port, "hostnames": ["*.example.test"]},
    ]
    routes = [
        {"name": "api", "listeners": ["api"], "rules": [_rule("api")]},
        {"name": "www", "listeners": ["www"], "rules": [_rule("www")]},
    ]
    if extra:
        listeners.append(
            {"name": "shop", "protocol": "HTTP", "port": port, "hostnames": ["shop.test"]}
        )
        routes.append({"name": "shop", "listeners": ["shop"], "rules": [_rule("shop")]})
    return {
        "admin": {"port": admin_port},
        "listeners": listeners,
        "backends": [
            {"name": "app", "endpoints": [{"address": "127.0.0.1", "port": upstream.port}]}
        ],
        "routes": routes,
    }


def _rule(name: str) -> dict[str, Any]:
    return {
        "backendRefs": [{"name": "app"}],
        "filters": {"requestHeaders": {"set": [{"name": "X-Route", "value": name}]}},
    }


async def _route_of(port: int, host: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /echo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        out = await asyncio.wait_for(reader.read(-1), 3)
    finally:
        writer.close()
    head, _, body = out.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        return status, ""
    headers = dict((k.lower(), v) for k, v in json.loads(body)["headers"])
    return status, headers.get("x-route", "")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_worker_serves_listeners_sharing_a_port_on_one_socket_across_reloads(
    upstream: Upstream, tmp_path: Path
) -> None:
    port, admin_port = _free_port(), _free_port()
    path = tmp_path / "gw.yaml"
    path.write_text(json.dumps(_config(port, admin_port, upstream)))
    worker = Worker(ServerOptions(str(path)), serve_admin=False)
    await worker.start()
    try:
        assert list(worker.servers) == [f"127.0.0.1:{port}"]
        assert await _route_of(port, "api.example.test") == (200, "api")
        assert await _route_of(port, "www.example.test:8080") == (200, "www")
        assert await _route_of(port, "shop.test") == (404, "")
        path.write_text(json.dumps(_config(port, admin_port, upstream, extra=True)))
        worker.reload()
        for _ in range(200):
            if (await _route_of(port, "shop.test"))[0] == 200:
                break
            await asyncio.sleep(0.02)
        assert await _route_of(port, "shop.test") == (200, "shop")
        assert await _route_of(port, "api.example.test") == (200, "api")
        assert list(worker.servers) == [f"127.0.0.1:{port}"]
        (group, _) = worker.servers[f"127.0.0.1:{port}"]
        assert [lst.name for lst in group] == ["api", "www", "shop"]
    finally:
        worker.request_stop()
        await worker.drain(0.1)
