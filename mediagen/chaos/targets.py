"""Which addresses the chaos run may talk to: loopback only. Pure: no I/O, no DNS.

The run stops, floods and kills what it reaches, so a target is accepted only when its host is
written as a loopback address (``127.0.0.0/8``, ``::1``) or is ``localhost``; any other name is
refused without being resolved, so no packet ever leaves the machine to find out.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


class NonLoopbackTarget(ValueError):
    """A URL or address that is not on loopback."""


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or a literal address, brackets allowed) is loopback."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_loopback_url(url: str, what: str) -> None:
    """Raise :class:`NonLoopbackTarget` unless ``url``'s host is loopback."""
    try:
        host = urlsplit(url).hostname
    except ValueError as exc:
        raise NonLoopbackTarget(f"{what}: not a URL: {url!r}") from exc
    if not host or not is_loopback_host(host):
        raise NonLoopbackTarget(
            f"{what} must be on loopback (127.0.0.0/8, ::1, localhost), got {host or url!r}"
        )
