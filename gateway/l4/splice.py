"""Zero-copy relaying of a proxied TCP pair with splice(2) through a pipe per direction.

Theory of operation. Once `l4.tcp.TcpProxy` has both sockets connected, it
may hand them to a `SplicedPair`: the sockets are duplicated out of their
asyncio transports (which are then closed; the duplicates keep the
connections open), and each direction moves bytes socket → pipe → socket
with `os.splice`, so payload never enters Python. A direction reads while its
pipe is empty; when the destination cannot take the pipe's bytes it stops
reading and waits for the destination to become writable (backpressure). A
source at EOF makes the pair shut the destination's write side once the pipe
is drained (half-close); the pair closes when both directions ended, or at
once on an error or `abort()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from typing import Final

CHUNK: Final = 1 << 20
"""Bytes asked of one splice; the pipe is sized to hold it."""
FLAGS: Final = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_F_SETPIPE_SZ: Final = 1031
_RESET_ON_CLOSE: Final = struct.pack("ii", 1, 0)
"""SO_LINGER on with a zero timeout: close() sends a reset."""


def available() -> bool:
    """Whether this platform has os.splice (Linux, Python 3.10+)."""
    return hasattr(os, "splice")


class _Direction:
    __slots__ = ("done", "dst", "loop", "pair", "pending", "pipe_r", "pipe_w", "src")

    def __init__(self, pair: SplicedPair, src: int, dst: int) -> None:
        self.pair = pair
        self.loop = pair.loop
        self.src = src
        self.dst = dst
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            import fcntl

            fcntl.fcntl(self.pipe_w, _F_SETPIPE_SZ, CHUNK)
        except OSError:
            pass  # the default 64 KiB pipe still works
        self.pending = 0
        self.done = False

    def start(self) -> None:
        self.loop.add_reader(self.src, self.readable)

    def readable(self) -> None:
        try:
            n = os.splice(self.src, self.pipe_w, CHUNK, flags=FLAGS)
        except BlockingIOError:
            return
        except OSError:
            self.pair.abort()
            return
        if n == 0:  # EOF from the source: pass it on once the pipe is empty
            self.loop.remove_reader(self.src)
            self.done = True
            if not self.pending:
                self.pair.shut(self)
            return
        self.pending += n
        self.pair.moved += 1
        self.drain()

    def drain(self) -> None:
        while self.pending:
            try:
                n = os.splice(self.pipe_r, self.dst, self.pending, flags=FLAGS)
            except BlockingIOError:
                self.loop.remove_reader(self.src)
                self.loop.add_writer(self.dst, self.writable)
                return
            except OSError:
                self.pair.abort()
                return
            self.pending -= n

    def writable(self) -> None:
        self.drain()
        if self.pending:
            return
        self.loop.remove_writer(self.dst)
        if self.done:
            self.pair.shut(self)
        else:
            self.loop.add_reader(self.src, self.readable)

    def close(self) -> None:
        self.loop.remove_reader(self.src)
        self.loop.remove_writer(self.dst)
        os.close(self.pipe_r)
        os.close(self.pipe_w)


class SplicedPair:
    """Two connected sockets relayed by splice(2) until both directions end."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: socket.socket,
        upstream: socket.socket,
        on_close: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.client = client
        self.upstream = upstream
        self.on_close = on_close
        self.moved = 0
        self.closed = False
        self.ended = 0
        self.up = _Direction(self, client.fileno(), upstream.fileno())
        self.down = _Direction(self, upstream.fileno(), client.fileno())

    def start(self) -> None:
        self.up.start()
        self.down.start()

    def shut(self, direction: _Direction) -> None:
        """The direction's source ended and its pipe is empty: half-close its destination."""
        target = self.upstream if direction is self.up else self.client
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
        self.ended += 1
        if self.ended == 2:
            self.close()

    def abort(self) -> None:
        """Cut both connections now (reset, as an aborted transport does)."""
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.up.close()
        self.down.close()
        self.client.close()
        self.upstream.close()
        self.on_close()
