"""Which output URLs may be fetched, and which of them get the provider's token. Pure.

Host entries (``MEDIAGEN_OUTPUT_HOSTS``, ``MEDIAGEN_OUTPUT_TOKEN_HOSTS``):

==========================  ====================================================================
``replicate.delivery``      that host, over https on port 443
``*.replicate.delivery``    any subdomain of it (not the bare domain), https on port 443
``127.0.0.1:8090``          exactly that host and port, http or https; the only kind of entry
                            whose host may resolve to a private or loopback address (the
                            bundled emulator, a MinIO beside the worker)
==========================  ====================================================================

Each hop of a download (the first URL and every redirect) is checked with :meth:`FetchPolicy.
check`; the address it resolves to is checked separately, at connect time
(:mod:`mediagen.fetching.network`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from mediagen.fetching.addresses import legacy_ipv4, parse_ip

#: Replicate serves output files from these (reference/replicate.md §1.7).
DELIVERY_HOSTS = ("replicate.delivery", "*.replicate.delivery")

# ErrorInfo reasons of refused and failed fetches.
HOST_NOT_ALLOWED = "OUTPUT_HOST_NOT_ALLOWED"
ADDRESS_FORBIDDEN = "OUTPUT_ADDRESS_FORBIDDEN"
TOO_MANY_REDIRECTS = "OUTPUT_TOO_MANY_REDIRECTS"
DOWNLOAD_TIMEOUT = "OUTPUT_DOWNLOAD_TIMEOUT"
DOWNLOAD_TOO_SLOW = "OUTPUT_DOWNLOAD_TOO_SLOW"
TOO_LARGE = "OUTPUT_TOO_LARGE"
TOO_MANY_OUTPUTS = "TOO_MANY_OUTPUTS"

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def _normal_host(host: str) -> str:
    """Lower case, no trailing dot, IP literals in their canonical form (``::ffff:7f00:1``)."""
    name = host.lower().removesuffix(".")
    address = parse_ip(name)
    return name if address is None else str(address)


@dataclass(frozen=True)
class HostRule:
    """One allowlist entry (see the module docstring)."""

    host: str  # lower case; for a wildcard, the parent domain
    wildcard: bool = False
    port: int | None = None  # set: an exact host:port entry

    @classmethod
    def parse(cls, entry: str) -> HostRule:
        """``ValueError`` for an entry that is none of the three forms."""
        text = entry.strip().lower()
        wildcard = text.startswith("*.")
        if wildcard:
            text = text[2:]
        port_text: str | None = None
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"not a host, *.domain or host:port entry: {entry!r}")
                port_text = rest[1:]
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        else:
            host = text
        host = _normal_host(host)
        port = None
        if port_text is not None:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536 or wildcard:
                raise ValueError(f"not a host, *.domain or host:port entry: {entry!r}")
            port = int(port_text)
        is_name = bool(_HOST_NAME.fullmatch(host)) and legacy_ipv4(host) is None
        if not (is_name or parse_ip(host) is not None) or (wildcard and not is_name):
            raise ValueError(f"not a host, *.domain or host:port entry: {entry!r}")
        return cls(host=host, wildcard=wildcard, port=port)

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if self.port is not None:
            return host == self.host and port == self.port
        if scheme != "https" or port != 443:
            return False
        return host.endswith(f".{self.host}") if self.wildcard else host == self.host

    def __str__(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        if self.wildcard:
            return f"*.{name}"
        return name if self.port is None else f"{name}:{self.port}"


def parse_rules(entries: Iterable[str]) -> tuple[HostRule, ...]:
    return tuple(HostRule.parse(entry) for entry in entries if entry.strip())


@dataclass(frozen=True)
class Hop:
    """A URL that passed the host check: where to connect, and what allowed it."""

    url: httpx.URL
    host: str
    port: int
    rule: HostRule

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.url.scheme, self.host, self.port)

    @property
    def private_ok(self) -> bool:
        """Only an exact host:port entry may lead to a private or loopback address."""
        return self.rule.port is not None


class Refused(Exception):
    """A URL or address the policy will not fetch; ``reason`` is an ErrorInfo reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FetchPolicy:
    """Allowed output hosts, the hosts that get the token, and the API's own origin."""

    output_hosts: tuple[HostRule, ...] = parse_rules(DELIVERY_HOSTS)
    token_hosts: tuple[HostRule, ...] = parse_rules(DELIVERY_HOSTS)
    api_origin: tuple[str, str, int] | None = None  # the token goes there anyway

    @classmethod
    def build(
        cls,
        output_hosts: Iterable[str] = DELIVERY_HOSTS,
        token_hosts: Iterable[str] = DELIVERY_HOSTS,
        api_base_url: str | None = None,
    ) -> FetchPolicy:
        origin = None
        if api_base_url:
            url = httpx.URL(api_base_url)
            origin = (url.scheme, _normal_host(url.host), url.port or _DEFAULT_PORTS[url.scheme])
        return cls(parse_rules(output_hosts), parse_rules(token_hosts), origin)

    def check(self, raw: str | httpx.URL, *, hop: str = "output") -> Hop:
        """The hop for ``raw``, or :class:`Refused` (``OUTPUT_HOST_NOT_ALLOWED``) saying why."""
        try:
            url = raw if isinstance(raw, httpx.URL) else httpx.URL(raw)
        except httpx.InvalidURL as exc:
            raise Refused(HOST_NOT_ALLOWED, f"{hop} URL is malformed: {exc}") from exc
        scheme = url.scheme
        host = _normal_host(url.host)
        shown = host or "(no host)"
        if scheme not in _DEFAULT_PORTS:
            raise Refused(HOST_NOT_ALLOWED, f"{hop} URL scheme {scheme!r} is not http(s)")
        if url.userinfo:
            raise Refused(HOST_NOT_ALLOWED, f"{hop} URL for {shown} carries credentials")
        if legacy_ipv4(host) is not None and parse_ip(host) is None:
            raise Refused(
                HOST_NOT_ALLOWED,
                f"{hop} host {shown} is a non-canonical numeric address "
                f"({legacy_ipv4(host)}); refused",
            )
        port = url.port or _DEFAULT_PORTS[scheme]
        rule = next((r for r in self.output_hosts if r.matches(scheme, host, port)), None)
        if rule is None:
            allowed = ", ".join(str(r) for r in self.output_hosts) or "none"
            raise Refused(
                HOST_NOT_ALLOWED,
                f"{hop} host {shown} ({scheme}, port {port}) is not an allowed output host "
                f"(allowed: {allowed})",
            )
        return Hop(url=url, host=host, port=port, rule=rule)

    def private_ok(self, host: str, port: int) -> bool:
        """Whether ``host:port`` is an exact entry, the only kind that may resolve to a private
        or loopback address."""
        name = _normal_host(host)
        return any(r.port is not None and r.matches("", name, port) for r in self.output_hosts)

    def sends_token(self, hop: Hop, first: Hop) -> bool:
        """Whether ``hop`` may carry the token: a token host or the API itself, and never after
        a redirect has moved to another origin."""
        if hop.origin != first.origin:
            return False
        if self.api_origin is not None and hop.origin == self.api_origin:
            return True
        return any(r.matches(hop.url.scheme, hop.host, hop.port) for r in self.token_hosts)
