"""Network addresses: ``(host, port)`` pairs and their ``HOST:PORT`` text, in one place for
every layer (gossip, the HTTP API, the config, the CLI, the admin socket)."""

from __future__ import annotations

import ipaddress
from typing import TypeAlias

Addr: TypeAlias = tuple[str, int]
"""A gossip address: (host, port)."""


def parse_addr(text: str) -> Addr:
    """``HOST:PORT`` as an address (the host may itself hold colons, as IPv6 does)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def format_addr(addr: Addr) -> str:
    """An address as ``HOST:PORT``."""
    return f"{addr[0]}:{addr[1]}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost`` (where gossip may run
    without keys: nothing outside this machine can reach it)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
