"""`portway demo` with a port it wants taken: one line naming the port and its holder."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from portway.cli import main
from portway.demo import describe_summary
from portway.demo_site import DemoSite
from portway.port_holder import port_taken
from portway.traffic import Summary


@pytest.fixture
def held() -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.22:30080, where the demo's node beta-2 wants to be."""
    sock = socket.socket()
    sock.bind(("127.0.0.22", 30080))
    sock.listen()
    yield sock
    sock.close()


def test_a_free_port_is_free_and_a_held_one_names_this_process() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert port_taken("127.0.0.1", port) is None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        taken = port_taken("127.0.0.1", port)
    assert taken is not None
    assert str(taken) == (
        f"127.0.0.1:{port} is already in use (held by {Path('/proc/self/comm').read_text().strip()}"
        f" (pid {os.getpid()}))"
    )


def test_demo_refuses_to_start_on_a_taken_port_with_one_line(
    held: socket.socket, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--phase-seconds", "0.1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("portway demo: 127.0.0.22:30080 is already in use (held by ")
    assert err.endswith(
        "and the demo needs it for simulated node beta-2; stop that program and retry\n"
    )


def test_the_demo_wants_its_gateway_admin_and_every_node_port(tmp_path: Path) -> None:
    site = DemoSite(tmp_path, log=lambda _: None)
    wanted = {(address, port) for address, port, _ in site.wanted_ports()}
    assert {("127.0.0.1", 18080), ("127.0.0.1", 19901), ("127.0.0.11", 30080)} <= wanted
    assert ("127.0.0.21", 30081) in wanted


def test_progress_is_rendered_for_people() -> None:
    summary = Summary(
        1366, 0, {"alpha": 0.8916544655929722, "canary": 0.10834553440702782}, 0.6123456789, 2.54321
    )
    assert describe_summary(summary) == (
        "1366 requests, 0 failed; served by alpha 89%, canary 11%; p50 0.6 ms, p99 2.5 ms"
    )


def test_losing_the_gateway_mid_demo_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import aiohttp

    async def gateway_gone(self: DemoSite) -> None:
        raise aiohttp.ClientConnectionError("Cannot connect to host 127.0.0.1:19901")

    monkeypatch.setattr(DemoSite, "check_ports", lambda self: None)
    monkeypatch.setattr(DemoSite, "start", gateway_gone)
    assert main(["demo", "--phase-seconds", "0.1"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "portway demo: the demo stopped: Cannot connect to host 127.0.0.1:19901; "
        "the gateway said: no log written\n"
    )
