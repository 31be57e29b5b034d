"""Hostname patterns as routes and listeners write them (Gateway API rules).

A hostname is a DNS name of letters, digits and hyphens in dot-separated
labels; `*.example.com` matches any one-or-more labels in front of
`example.com`, and the wildcard may only be the whole leftmost label. IP
addresses and ports are not hostnames.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from gateway.config.errors import Path
from gateway.config.filter_checks import Report

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", re.IGNORECASE)
MAX_HOSTNAME_CHARS = 253


def hostname_problem(hostname: str) -> str | None:
    """Why `hostname` is not a valid hostname pattern, or None when it is."""
    if not hostname:
        return "a hostname cannot be empty"
    if len(hostname) > MAX_HOSTNAME_CHARS:
        return f"a hostname has at most {MAX_HOSTNAME_CHARS} characters"
    if ":" in hostname and not _is_ip(hostname):
        return f"{hostname!r} has a port or scheme; write the bare host name"
    if _is_ip(hostname):
        return f"{hostname!r} is an IP address; hostnames match the Host header by DNS name"
    labels = hostname.rstrip(".").split(".")
    for index, label in enumerate(labels):
        if label == "*":
            if index != 0:
                return f"{hostname!r}: '*' is allowed only as the leftmost label (*.example.com)"
            if len(labels) < 2:
                return f"{hostname!r}: a wildcard needs a domain after it (*.example.com)"
            continue
        if "*" in label:
            return f"{hostname!r}: a wildcard must be a whole label, as in *.example.com"
        if not _LABEL.match(label):
            return (
                f"{hostname!r}: label {label!r} must be 1-63 letters, digits or '-', "
                "not starting or ending with '-'"
            )
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def check_hostnames(add: Report, path: Path, hostnames: Iterable[str]) -> None:
    """Report each hostname of the list at `path` that is not a valid pattern."""
    for index, hostname in enumerate(hostnames):
        problem = hostname_problem(hostname)
        if problem is not None:
            add((*path, index), problem)
