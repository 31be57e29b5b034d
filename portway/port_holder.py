"""Whether a local TCP port is free, and who holds it when it is not.

`portway demo` binds fixed loopback ports (its gateway on :18080, the admin API
on :19901, simulated NodePorts on 127.0.0.x:30080). When one is taken the
newcomer should read one line naming the port and what holds it, not an
`OSError` traceback from deep inside aiohttp. Linux tells who holds a
listening socket through /proc (the socket's inode in /proc/net/tcp*, then
the process whose fd links to it); elsewhere, or for another user's
process, the holder is unknown and the line says so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

_LISTEN = "0A"


@dataclass(frozen=True, slots=True)
class PortTaken:
    """A port someone else holds: where, and who when it can be told."""

    address: str
    port: int
    holder: str | None

    def __str__(self) -> str:
        who = f"held by {self.holder}" if self.holder else "held by another program"
        return f"{self.address}:{self.port} is already in use ({who})"


def port_taken(address: str, port: int) -> PortTaken | None:
    """None when `address:port` can be bound now (TCP), else who is in the way."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return PortTaken(address, port, holder(port))
    return None


def holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """`"python3 (pid 1234)"` for the process listening on `port`, or None if unknown."""
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (pid_dir / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    name = (pid_dir / "comm").read_text().strip()
                    return f"{name} (pid {pid_dir.name})"
    return None


def _listening_inodes(port: int, proc: Path) -> set[str]:
    found: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == _LISTEN
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                found.add(fields[9])
    return found
