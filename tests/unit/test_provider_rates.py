"""What the provider's per-minute budgets allow: buckets, poll spacing, pool size. Pure."""

from __future__ import annotations

import pytest

from mediagen.config import Settings
from mediagen.limits.bucket import Bucket
from mediagen.providers.rates import Budget, Rates, poll_spacing_s, pool_size, provider_rates

REPLICATE = Rates()


def test_buckets_refill_at_the_per_minute_rate_and_hold_burst_s_of_it() -> None:
    assert REPLICATE.bucket(Budget.CREATE) == Bucket(10.0, 10)
    assert REPLICATE.bucket(Budget.OTHER) == Bucket(50.0, 50)
    assert Rates(burst_s=10).bucket(Budget.CREATE) == Bucket(10.0, 100)
    assert Rates(creates_per_min=6).bucket(Budget.CREATE) == Bucket(0.1, 1)  # at least one
    assert Rates(requests_per_min=0).bucket(Budget.OTHER) is None  # off


def test_the_workers_budget_fits_its_burst_within_every_minute() -> None:
    # 10 at once, then 590 a minute: no 60 s holds more than 600 creates (601 were counted at
    # the emulator with a plain bucket), nor more than 3,000 other requests.
    strict = Rates(strict_minute=True)
    assert strict.bucket(Budget.CREATE) == Bucket(590 / 60, 10)
    assert strict.bucket(Budget.OTHER) == Bucket(2950 / 60, 50)
    assert Rates(creates_per_min=0.6, burst_s=100, strict_minute=True).bucket(
        Budget.CREATE
    ) == Bucket(0.01, 1)  # smaller than its burst: as is
    with pytest.raises(ValueError):
        Rates(creates_per_min=-1)


@pytest.mark.parametrize(
    ("in_flight", "requests_per_min", "spacing_s"),
    [
        (0, 3000, 0.0),
        (1, 3000, 60 / 2700),
        (25, 3000, 25 * 60 / 2700),  # ~0.56 s: the client's default 0.5 s is just too fast
        (2000, 3000, 2000 * 60 / 2700),  # ~44 s between polls of one prediction
        (2000, 0, 0.0),  # no budget: no spacing
    ],
)
def test_polls_are_spaced_so_every_prediction_in_flight_fits_the_budget(
    in_flight: int, requests_per_min: float, spacing_s: float
) -> None:
    rates = Rates(requests_per_min=requests_per_min)
    assert poll_spacing_s(in_flight, rates) == pytest.approx(spacing_s)
    if requests_per_min:  # polled that often, in_flight predictions spend 90 % of the budget
        assert in_flight * 60 / max(spacing_s, 1e-9) <= requests_per_min * 0.9 + 1e-6


@pytest.mark.parametrize(
    ("concurrency", "rates", "size"),
    [
        (2000, REPLICATE, 180),  # 60 calls/s over 2 s answers, plus bursts of 10 and 50
        (50, REPLICATE, 50),  # never more than jobs in flight
        (2000, Rates(creates_per_min=0, requests_per_min=0), 2000),
        (0, REPLICATE, 1),
    ],
)
def test_the_pool_is_sized_from_concurrency_and_budget(
    concurrency: int, rates: Rates, size: int
) -> None:
    assert pool_size(concurrency, rates) == size


def test_the_workers_rates_come_from_settings() -> None:
    env = {"MEDIAGEN_PROVIDER_CREATES_PER_MIN": "30", "MEDIAGEN_PROVIDER_REQUESTS_PER_MIN": "0"}
    rates = provider_rates(Settings.from_env(env))
    assert (rates.creates_per_min, rates.requests_per_min) == (30.0, 0.0)
    assert provider_rates(Settings()) == Rates(strict_minute=True)
