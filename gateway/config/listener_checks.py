"""Checks across a config's listeners: TLS where it belongs, hostnames, sockets shared or not.

Two listeners on one address and port are one socket: allowed when they can
share it (`ports.sharing_problem`: HTTPS listeners told apart by SNI, say),
an error at the second one's `port` otherwise, naming the first one's line.
An unspecified address (`0.0.0.0`, `::`) overlaps every address of its
family.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from gateway.config.errors import Path
from gateway.config.hostnames import check_hostnames
from gateway.config.issue_report import IssueReport
from gateway.config.model import Listener, ListenerProtocol
from gateway.config.ports import sharing_problem
from gateway.config.unread_fields import check_tcp_listener


def check_listeners(report: IssueReport, listeners: Sequence[Listener]) -> None:
    """Report each listener's TLS, hostname, TCP-field and socket-sharing problems."""
    bound: list[tuple[int, Listener]] = []
    for index, listener in enumerate(listeners):
        path: Path = ("listeners", index)
        if listener.protocol is ListenerProtocol.HTTPS and listener.tls is None:
            report.add(
                (*path, "protocol"), "an HTTPS listener needs a `tls` block with certificates"
            )
        elif listener.protocol is not ListenerProtocol.HTTPS and listener.tls is not None:
            hint = {
                ListenerProtocol.TLS: "TLS passthrough forwards encrypted bytes untouched",
                ListenerProtocol.TCP: "TCP listeners forward bytes untouched",
                ListenerProtocol.HTTP: "use protocol HTTPS to terminate TLS",
            }[listener.protocol]
            report.add(
                (*path, "tls"),
                f"`tls` termination is only for HTTPS listeners; {hint}",
                at_key=True,
            )
        check_hostnames(report.add, (*path, "hostnames"), listener.hostnames)
        check_tcp_listener(report.add, path, listener)
        if listener.tls is not None:
            for cert_index, cert in enumerate(listener.tls.certificates):
                cert_path = (*path, "tls", "certificates", cert_index, "hostnames")
                check_hostnames(report.add, cert_path, cert.hostnames)
        for other_index, other in bound:
            if other.port == listener.port and _addresses_overlap(other.address, listener.address):
                # the same address and port: one socket for both, if they can share it
                problem = (
                    sharing_problem(other, listener)
                    if ipaddress.ip_address(other.address) == ipaddress.ip_address(listener.address)
                    else ""
                )
                if problem is None:
                    continue
                report.add(
                    (*path, "port"),
                    f"{listener.address}:{listener.port} is already used by listener "
                    f"{other.name!r} (line {report.line_of(('listeners', other_index))})"
                    + (f"; {problem}" if problem else ""),
                )
                break
        bound.append((index, listener))


def _addresses_overlap(first: str, second: str) -> bool:
    a, b = ipaddress.ip_address(first), ipaddress.ip_address(second)
    if a.version != b.version:
        return False
    return a == b or a.is_unspecified or b.is_unspecified
