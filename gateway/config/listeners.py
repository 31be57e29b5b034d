"""Listeners: the sockets the gateway accepts on and how each speaks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from gateway.config.values import CONFIG, IPAddress, ListenerProtocol, Name, Port


@dataclass(frozen=True, slots=True, config=CONFIG)
class Certificate:
    """A certificate served for the given SNI hostnames (wildcards allowed)."""

    cert_file: str
    key_file: str
    hostnames: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, config=CONFIG)
class ListenerTls:
    """TLS termination settings of an HTTPS listener."""

    certificates: tuple[Certificate, ...] = Field(min_length=1)
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    alpn: tuple[str, ...] = ("http/1.1",)


@dataclass(frozen=True, slots=True, config=CONFIG)
class Listener:
    """A socket the gateway accepts on, and how it speaks."""

    name: Name
    protocol: ListenerProtocol
    port: Port
    address: IPAddress = "127.0.0.1"
    tls: ListenerTls | None = None
    hostnames: tuple[str, ...] = ()
