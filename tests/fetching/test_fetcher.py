"""OutputFetcher against real loopback servers: hops, addresses, the token, time limits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mediagen.fetching.fetcher import FetchLimits, OutputFetcher
from mediagen.fetching.network import GuardedTransport
from mediagen.fetching.policy import (
    ADDRESS_FORBIDDEN,
    DOWNLOAD_TIMEOUT,
    DOWNLOAD_TOO_SLOW,
    HOST_NOT_ALLOWED,
    TOO_MANY_REDIRECTS,
    FetchPolicy,
)
from mediagen.media.inspect import OutputTooLarge
from mediagen.providers.base import ProviderError
from tests.fixtures.outputs import PNG_BYTES, Net, OutputServerFactory

TOKEN = "r8_Xb3kQ9zL2mN8pR4tV6wY1aC5eG7iK0oS2uW4yZ"
TIMEOUT = httpx.Timeout(5.0)


def fetcher(policy: FetchPolicy, limits: FetchLimits | None = None, **kwargs: Any) -> OutputFetcher:
    return OutputFetcher(policy, limits or FetchLimits(), token=TOKEN, timeout=TIMEOUT, **kwargs)


async def fetch(f: OutputFetcher, url: str) -> bytes:
    try:
        return b"".join([chunk async for chunk in f.stream(url)])
    finally:
        await f.aclose()


async def refusal(f: OutputFetcher, url: str) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await fetch(f, url)
    assert not caught.value.transient or caught.value.reason in (
        DOWNLOAD_TIMEOUT,
        DOWNLOAD_TOO_SLOW,
    )
    return caught.value


async def test_an_exact_entry_fetches_and_gets_no_token_unless_listed(
    output_server: OutputServerFactory, loopback_only: Net
) -> None:
    server = await output_server()
    plain = FetchPolicy.build(output_hosts=(server.host_port,))
    listed = FetchPolicy.build(output_hosts=(server.host_port,), token_hosts=(server.host_port,))

    assert await fetch(fetcher(plain), f"{server.origin}/x.png") == PNG_BYTES
    assert await fetch(fetcher(listed), f"{server.origin}/x.png") == PNG_BYTES

    first, second = server.requests
    assert "authorization" not in first.headers
    assert second.headers["authorization"] == f"Bearer {TOKEN}"
    assert second.headers["accept-encoding"] == "identity"
    assert loopback_only.refused == []


async def test_a_name_resolving_to_loopback_is_refused_before_connecting(
    output_server: OutputServerFactory, loopback_only: Net
) -> None:
    server = await output_server()
    # An allowed delivery host whose DNS answer is loopback (or rebinds to it).
    answers: dict[str, list[str]] = {
        "pbxt.replicate.delivery": ["127.0.0.1"],
        "mixed.replicate.delivery": ["93.184.216.34", "10.1.2.3"],
    }

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    for host, why in (("pbxt", "127.0.0.1"), ("mixed", "10.1.2.3")):
        f = fetcher(FetchPolicy.build(), transport=_guarded(resolver))
        error = await refusal(f, f"https://{host}.replicate.delivery/x.png")
        assert error.reason == ADDRESS_FORBIDDEN and why in str(error)
    assert server.requests == [] and loopback_only.refused == []


async def test_it_connects_to_the_address_it_checked_with_the_hosts_name(
    output_server: OutputServerFactory, loopback_only: Net
) -> None:
    server = await output_server()
    looked_up: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["127.0.0.1"]

    name = f"files.internal:{server.port}"
    f = fetcher(FetchPolicy.build(output_hosts=(name,)), transport=_guarded(resolver))
    assert await fetch(f, f"http://{name}/x.png") == PNG_BYTES

    assert looked_up == ["files.internal"]  # once, by the backend that then connected
    (request,) = server.requests
    assert request.headers["host"] == name


async def test_every_redirect_hop_is_checked(
    output_server: OutputServerFactory, loopback_only: Net
) -> None:
    allowed, target = await output_server(), await output_server()
    policy = FetchPolicy.build(output_hosts=(allowed.host_port,), token_hosts=(allowed.host_port,))

    for to in (
        f"{target.origin}/x.png",
        "http://169.254.169.254/latest/meta-data/",
        f"http://2130706433:{target.port}/",
        f"http://localhost:{target.port}/",
    ):
        error = await refusal(fetcher(policy), f"{allowed.origin}/redirect?to={to}")
        assert error.reason == HOST_NOT_ALLOWED and "redirect host" in str(error)
    assert target.requests == [] and loopback_only.refused == []

    # Allowed hops are followed (a relative Location too), with the token kept on the origin.
    both = FetchPolicy.build(
        output_hosts=(allowed.host_port, target.host_port), token_hosts=(allowed.host_port,)
    )
    assert await fetch(fetcher(both), f"{allowed.origin}/redirect?to=/y.png") == PNG_BYTES
    assert allowed.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"
    url = f"{allowed.origin}/redirect?to={target.origin}/z.png"
    assert await fetch(fetcher(both), url) == PNG_BYTES
    assert "authorization" not in target.requests[-1].headers  # never across origins


async def test_redirects_are_bounded(output_server: OutputServerFactory) -> None:
    server = await output_server()
    policy = FetchPolicy.build(output_hosts=(server.host_port,))
    url = f"{server.origin}/x.png"
    for _ in range(3):
        url = str(httpx.URL(f"{server.origin}/redirect", params={"to": url}))
    assert await fetch(fetcher(policy, FetchLimits(max_redirects=3)), url) == PNG_BYTES
    error = await refusal(fetcher(policy, FetchLimits(max_redirects=2)), url)
    assert error.reason == TOO_MANY_REDIRECTS and "more than 2 times" in str(error)


async def test_a_slow_drip_fails_at_the_deadline(output_server: OutputServerFactory) -> None:
    server = await output_server()
    policy = FetchPolicy.build(output_hosts=(server.host_port,))
    limits = FetchLimits(deadline_s=1.0, min_rate_bps=0)
    started = time.monotonic()
    error = await refusal(fetcher(policy, limits), f"{server.origin}/drip?bytes=100&every_s=0.1")
    elapsed = time.monotonic() - started
    assert error.reason == DOWNLOAD_TIMEOUT and "within 1s" in str(error)
    assert 0.9 <= elapsed < 3


async def test_a_download_below_the_minimum_rate_fails(output_server: OutputServerFactory) -> None:
    server = await output_server()
    policy = FetchPolicy.build(output_hosts=(server.host_port,))
    limits = FetchLimits(deadline_s=30, min_rate_bps=50, grace_s=0.5)
    started = time.monotonic()
    error = await refusal(fetcher(policy, limits), f"{server.origin}/drip?bytes=1000&every_s=0.1")
    assert error.reason == DOWNLOAD_TOO_SLOW and "slower than 50 bytes/s" in str(error)
    assert time.monotonic() - started < 3


async def test_a_declared_oversize_body_is_refused_before_reading(
    output_server: OutputServerFactory,
) -> None:
    server = await output_server()
    policy = FetchPolicy.build(output_hosts=(server.host_port,))
    with pytest.raises(OutputTooLarge):
        await fetch(fetcher(policy, FetchLimits(max_bytes=10)), f"{server.origin}/x.png")


def _guarded(resolver: Callable[[str, int], Any]) -> httpx.AsyncBaseTransport:
    """The real guarded transport with a stand-in resolver (no DNS query leaves the machine)."""

    def private_ok(host: str, port: int) -> bool:
        return host == "files.internal"

    return GuardedTransport(private_ok, limits=httpx.Limits(), resolver=resolver)
