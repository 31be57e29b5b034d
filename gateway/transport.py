"""What the proxies hold of an asyncio transport, and the `send` of an unconnected protocol.

Both sides of the HTTP proxy (`gateway.http`, `gateway.upstream.connection`)
keep their socket's transport and bind its `write` once. They only need the
calls below, so `Transport` is a `typing.Protocol` naming them rather than
`asyncio.Transport`: uvloop's transports are not `asyncio.Transport`
subclasses, and mypyc checks a declared class at run time. This module is
kept out of the compiled hot path (`gateway.compiled.HOT_PATH`), so compiled
code sees `Transport` as a plain object and never checks it, while mypy
checks every call against it.

Neutral on purpose: the client side and the upstream side both import it,
and neither imports the other through it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class Transport(Protocol):
    """The calls the proxies make on a stream transport (asyncio's or uvloop's)."""

    def write(self, data: bytes) -> None: ...
    def writelines(self, data: Iterable[bytes]) -> None: ...
    def write_eof(self) -> None: ...
    def can_write_eof(self) -> bool: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def is_closing(self) -> bool: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


def unconnected(data: bytes) -> None:
    """What a protocol's bound `send` is until `connection_made` binds `transport.write`."""
    raise RuntimeError("write before connection_made")


class Unconnected:
    """The transport of a protocol before `connection_made`: every call is a bug, and says so."""

    __slots__ = ()

    def write(self, data: bytes) -> None:
        unconnected(data)

    def writelines(self, data: Iterable[bytes]) -> None:
        unconnected(b"")

    def write_eof(self) -> None:
        unconnected(b"")

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def is_closing(self) -> bool:
        return True

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


UNCONNECTED: Transport = Unconnected()
