"""Which IP addresses an output download may connect to, and odd numeric host spellings. Pure.

An address is forbidden unless it is globally routable unicast: loopback, private, shared
(CGNAT), link-local (and so cloud metadata), multicast, unspecified, reserved, documentation
and benchmark ranges are all refused, and so is any IPv6 form that embeds such an IPv4 address
(IPv4-mapped, -compatible, -translated, NAT64, 6to4).
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Cloud instance metadata services (AWS, GCP, Azure, OpenStack; AWS IPv6; Alibaba).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)

_V4_EXTRA = tuple(
    ipaddress.ip_network(n)
    for n in (
        "100.64.0.0/10",  # shared address space (CGNAT)
        "192.88.99.0/24",  # 6to4 relay anycast
        "198.18.0.0/15",  # benchmarking
    )
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible ::a.b.c.d
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT IPv4-translated
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")

_NUMERIC_PART = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")


def forbidden_reason(address: IPAddress) -> str | None:
    """Why connecting to ``address`` is refused, or None if it is a public unicast address."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = forbidden_reason(embedded)
            if inner is not None:
                return f"an IPv6 form of {embedded}, {inner}"
        if address in _SITE_LOCAL:
            return "a site-local address"
    checks = (
        (address.is_unspecified, "the unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (any(address in net for net in _V4_EXTRA if address.version == 4), "a private address"),
        (not address.is_global, "not a globally routable address"),
    )
    return next((why for hit, why in checks if hit), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms that embed one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in _NAT64) or address in _TRANSLATED:
        return low32
    if address in _COMPATIBLE and int(address) > 1:  # :: and ::1 are themselves, not IPv4
        return low32
    return None


def parse_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is a canonical literal (``1.2.3.4``, ``::1``,
    ``[::1]``), else None. Zone ids (``fe80::1%eth0``) are not accepted."""
    if "%" in host:
        return None
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address ``inet_aton`` would read from a numeric spelling such as ``2130706433``,
    ``0x7f.1``, ``127.1`` or ``0177.0.0.1``; None if ``host`` is not numeric that way.

    The C resolver accepts all of these; an allowlist that compares strings must not.
    """
    parts = host.split(".")
    if parts and parts[-1] == "":  # a trailing dot
        parts.pop()
    if not 1 <= len(parts) <= 4 or not all(_NUMERIC_PART.fullmatch(p) for p in parts):
        return None
    try:
        numbers = [_number(p) for p in parts]
    except ValueError:
        return None
    *head, last = numbers
    if any(n > 0xFF for n in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    value = 0
    for n in head:
        value = value << 8 | n
    return ipaddress.IPv4Address(value << (8 * (4 - len(head))) | last)


def _number(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)
    return int(part)
