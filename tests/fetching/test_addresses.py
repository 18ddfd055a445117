"""Which addresses an output download may connect to, and numeric host spellings (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from mediagen.fetching.addresses import forbidden_reason, legacy_ipv4, parse_ip


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.1.2", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # CGNAT
        ("198.18.0.1", "private"),  # benchmarking
        ("192.0.2.1", "private"),  # documentation
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::ffff:127.0.0.1", "IPv6 form of 127.0.0.1"),
        ("::ffff:10.0.0.1", "IPv6 form of 10.0.0.1"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("::127.0.0.1", "IPv6 form of 127.0.0.1"),  # IPv4-compatible
        ("::ffff:0:7f00:1", "IPv6 form of 127.0.0.1"),  # IPv4-translated
        ("64:ff9b::7f00:1", "IPv6 form of 127.0.0.1"),  # NAT64
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 of 169.254.169.254
        ("64:ff9b:1::a00:1", "IPv6 form of 10.0.0.1"),  # local-use NAT64
        ("2002:7f00:1::", "IPv6 form of 127.0.0.1"),  # 6to4
        ("2002:a00:1::1", "IPv6 form of 10.0.0.1"),
        ("2001:db8::1", "private"),  # documentation
    ],
)
def test_forbidden(address: str, why: str) -> None:
    reason = forbidden_reason(ipaddress.ip_address(address))
    assert reason is not None and why in reason


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111"],
    # NAT64 of a public address is refused too (Python counts 64:ff9b::/96 as reserved).
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0", "0.0.0.0"),
        ("127.0.0.1.", "127.0.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("127.0.0.1", "127.0.0.1"),  # the canonical spelling is numeric too
    ],
)
def test_legacy_numeric_spellings(host: str, address: str) -> None:
    assert legacy_ipv4(host) == ipaddress.IPv4Address(address)


@pytest.mark.parametrize(
    "host", ["replicate.delivery", "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "08.1", "", "a.1"]
)
def test_names_and_impossible_numbers_are_not_numeric(host: str) -> None:
    assert legacy_ipv4(host) is None


def test_parse_ip_takes_canonical_literals_only() -> None:
    assert parse_ip("[::1]") == ipaddress.ip_address("::1")
    assert parse_ip("10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert parse_ip("2130706433") is None
    assert parse_ip("127.1") is None
    assert parse_ip("fe80::1%eth0") is None
