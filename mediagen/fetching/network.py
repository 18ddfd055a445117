"""Connections for output downloads: resolve, check the address, connect to that address.

httpx resolves and connects inside httpcore; a check before the request would look up the name
once and the connection would look it up again (DNS rebinding: public the first time, 127.0.0.1
the second). :class:`GuardedBackend` is the httpcore network backend that does both steps
itself: it resolves the name, refuses if any address is forbidden, and connects to the very
address it checked. TLS still names the host (httpcore passes the origin host as SNI), and the
Host header is the URL's.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

from mediagen.fetching.addresses import IPAddress, forbidden_reason, parse_ip
from mediagen.fetching.policy import ADDRESS_FORBIDDEN, Refused

#: (host, port) -> whether that origin may resolve to a private address (exact entries only).
PrivateAllowed = Callable[[str, int], bool]
Resolver = Callable[[str, int], Any]  # async (host, port) -> list of IP strings


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, for TCP."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_address(
    host: str, port: int, addresses: Iterable[str], *, private_ok: bool
) -> IPAddress:
    """The address to connect to: the first one, if none of them is forbidden."""
    found = [a for a in (parse_ip(raw.partition("%")[0]) for raw in addresses) if a is not None]
    if not found:
        raise Refused(ADDRESS_FORBIDDEN, f"output host {host} resolved to no usable address")
    if not private_ok:
        for address in found:
            why = forbidden_reason(address)
            if why is not None:
                shown = host if host == str(address) else f"{host} ({address})"
                raise Refused(ADDRESS_FORBIDDEN, f"output host {shown} is {why}; refused")
    return found[0]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's AnyIO backend, connecting only to checked addresses."""

    def __init__(self, private_allowed: PrivateAllowed, resolver: Resolver = resolve) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._private_allowed = private_allowed
        self._resolve = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        literal = parse_ip(host)
        addresses = [str(literal)] if literal is not None else await self._resolve(host, port)
        address = checked_address(
            host, port, addresses, private_ok=self._private_allowed(host, port)
        )
        return await self._inner.connect_tcp(
            str(address),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise Refused(ADDRESS_FORBIDDEN, "unix sockets are never an output destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (its request/response and error mapping) over a
    :class:`GuardedBackend`; never through a proxy, never reading the environment (no
    ``HTTP_PROXY``, no ``.netrc``)."""

    def __init__(
        self,
        private_allowed: PrivateAllowed,
        *,
        limits: httpx.Limits,
        resolver: Resolver = resolve,
    ) -> None:
        super().__init__(trust_env=False, limits=limits)
        # httpx takes no network backend argument; the pool it built is replaced by the same
        # pool with ours (the only private attribute this module touches).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(private_allowed, resolver),
        )
