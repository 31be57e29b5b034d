"""Listeners: the sockets the gateway accepts on and how each speaks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass

from gateway.config.access import AccessPolicy
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
    client_auth: Literal["none", "optional", "required"] = "none"
    """mTLS: ask clients for a certificate signed by `clientCaFile` (`optional`
    lets clients without one through; `required` refuses them in the handshake)."""
    client_ca_file: str | None = None
    client_subject_header: str = "x-client-cert-subject"
    """Request header carrying the verified client certificate's subject (RFC 4514)
    upstream; a client-sent header of this name is always removed."""

    @model_validator(mode="after")
    def _client_auth_needs_ca(self) -> ListenerTls:
        if self.client_auth != "none" and not self.client_ca_file:
            raise ValueError("clientAuth needs clientCaFile (the CAs signing client certificates)")
        return self


@dataclass(frozen=True, slots=True, config=CONFIG)
class Listener:
    """A socket the gateway accepts on, and how it speaks."""

    name: Name
    protocol: ListenerProtocol
    port: Port
    address: IPAddress = "127.0.0.1"
    tls: ListenerTls | None = None
    hostnames: tuple[str, ...] = ()
    proxy_protocol: bool = False
    """Every connection starts with a PROXY protocol (v1 or v2) header from the L4
    balancer in front; its source address is the client's. Connections without
    one are closed."""
    access: AccessPolicy | None = None
    """Who may connect at all, by the connection's client address (socket or PROXY
    header): HTTP answers 403 `portway-error: access`, TCP/TLS closes."""
    max_request_body_bytes: int | None = Field(default=None, ge=0)
    """Largest request body accepted on this listener (413 beyond; a rule may set less)."""

    @model_validator(mode="after")
    def _proxy_protocol_not_before_tls(self) -> Listener:
        if self.proxy_protocol and self.protocol is ListenerProtocol.HTTPS:
            raise ValueError(
                "proxyProtocol on an HTTPS listener is not supported yet "
                "(HTTP, TCP and TLS passthrough listeners support it)"
            )
        return self
