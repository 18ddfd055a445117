"""The signing secret: configured, or fetched once and cached; fetched again only when a
signature does not match, and never more often than its limits allow."""

from __future__ import annotations

import pytest

from mediagen.providers.base import ProviderError
from mediagen.webhooks.secret import SigningSecret


class Account:
    """Answers the current secret, or fails while ``down``; counts the calls."""

    def __init__(self) -> None:
        self.key = "whsec_b25l"
        self.down = False
        self.calls = 0

    async def fetch(self) -> str:
        self.calls += 1
        if self.down:
            raise ProviderError("Replicate is down", transient=True)
        return self.key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_configured_secret_is_never_fetched_nor_rotated() -> None:
    secret = SigningSecret(configured="whsec_c2V0", fetch=Account().fetch)
    assert await secret.current() == "whsec_c2V0"
    assert await secret.newer() is None


async def test_the_fetched_secret_is_cached_and_rotation_is_asked_at_most_once_a_minute() -> None:
    account, clock = Account(), Clock()
    secret = SigningSecret(fetch=account.fetch, clock=clock)
    assert [await secret.current(), await secret.current()] == ["whsec_b25l"] * 2
    account.key = "whsec_dHdv"
    clock.now += 59
    assert await secret.newer() is None  # asked too recently: a forged request costs nothing
    clock.now += 1
    assert await secret.newer() == "whsec_dHdv"
    assert await secret.current() == "whsec_dHdv"
    clock.now += 60
    assert await secret.newer() is None  # fetched, unchanged
    assert account.calls == 3


async def test_a_failed_fetch_is_not_retried_for_a_second() -> None:
    account, clock = Account(), Clock()
    account.down = True
    secret = SigningSecret(fetch=account.fetch, clock=clock)
    for _ in range(3):
        with pytest.raises(ProviderError):
            await secret.current()
    assert account.calls == 1
    account.down = False
    clock.now += 1
    assert await secret.current() == "whsec_b25l"
    assert account.calls == 2


def test_a_secret_needs_a_value_or_a_source() -> None:
    with pytest.raises(ValueError):
        SigningSecret()
