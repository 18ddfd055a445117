"""The shared request budget: tokens per budget, waits instead of failures, one pause for every
caller after a 429; in-process, through Redis (the machine's, keys under a unique prefix), and
in front of the real provider and emulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from mediagen.emulator import Route, RunningEmulator, ServerError, Throttle
from mediagen.limits.bucket import Decision
from mediagen.limits.rate import LocalRateLimiter, RateLimiter
from mediagen.metrics import definitions as m
from mediagen.providers.base import ProviderError
from mediagen.providers.budget import (
    DEFAULT_PAUSE_S,
    MAX_PAUSE_S,
    BudgetExhausted,
    LocalPauses,
    RequestBudget,
)
from mediagen.providers.budgeted import MAX_TRIES, BudgetedProvider
from mediagen.providers.rates import Budget, Rates
from mediagen.providers.replicate import ReplicateProvider
from tests.fixtures.redis_server import MACHINE_REDIS_URL
from tests.fixtures.s3 import free_port

#: One create a second, bursts of 2; other calls off.
ONE_PER_S = Rates(creates_per_min=60, requests_per_min=0, burst_s=2)


class FakeTime:
    """A clock that a fake sleep moves forward; records every sleep."""

    def __init__(self) -> None:
        self.now_s = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now_s += seconds
        await asyncio.sleep(0)


class Counting:
    """A limiter that counts the times it is asked."""

    def __init__(self, inner: RateLimiter) -> None:
        self.inner = inner
        self.bucket = inner.bucket
        self.asked = 0

    async def take(self, key: str) -> Decision:
        self.asked += 1
        return await self.inner.take(key)

    async def close(self) -> None:
        await self.inner.close()


def local_budget(fake: FakeTime, rates: Rates = ONE_PER_S) -> tuple[RequestBudget, Counting]:
    bucket = rates.bucket(Budget.CREATE)
    assert bucket is not None
    limiter = Counting(LocalRateLimiter(bucket, clock=fake))
    return RequestBudget({Budget.CREATE: limiter}, LocalPauses(fake), sleep=fake.sleep), limiter


async def test_calls_past_the_burst_wait_for_their_token() -> None:
    fake = FakeTime()
    budget, _ = local_budget(fake)

    for _ in range(4):
        await budget.acquire(Budget.CREATE)

    assert fake.sleeps == [1.0, 1.0]  # two at once, then one a second
    await budget.acquire(Budget.OTHER)  # a budget turned off never waits for tokens...
    assert fake.sleeps == [1.0, 1.0]
    await budget.throttled(5.0)
    await budget.acquire(Budget.OTHER)  # ...but it waits out a 429's pause
    assert fake.sleeps == [1.0, 1.0, 5.0]


async def test_a_429_pauses_the_next_calls_for_its_hint_bounded() -> None:
    fake = FakeTime()
    budget, _ = local_budget(fake)

    assert await budget.throttled(3.0) == 3.0
    await budget.acquire(Budget.CREATE)
    assert fake.sleeps == [3.0]
    assert await budget.throttled(None) == DEFAULT_PAUSE_S
    assert await budget.throttled(3600.0) == MAX_PAUSE_S
    await budget.throttled(1.0)  # a shorter hint does not cut the longer pause short
    await budget.acquire(Budget.CREATE)
    assert fake.sleeps == [3.0, MAX_PAUSE_S]


async def test_waiters_stand_in_line_and_only_the_head_asks_the_bucket() -> None:
    fake = FakeTime()
    budget, limiter = local_budget(fake)

    await asyncio.gather(*(budget.acquire(Budget.CREATE) for _ in range(200)))

    # 200 tokens at one a second after the burst of 2: 198 s of waiting, one ask per token
    # plus one refused ask per wait, not one per waiter per token.
    assert sum(fake.sleeps) == pytest.approx(198.0)
    assert limiter.asked <= 2 * 200


async def test_a_wait_past_the_maximum_is_an_error_not_a_hang() -> None:
    bucket = Rates(creates_per_min=0.6, requests_per_min=0, burst_s=100).bucket(Budget.CREATE)
    assert bucket is not None and bucket.burst == 1
    budget = RequestBudget(
        {Budget.CREATE: LocalRateLimiter(bucket)}, LocalPauses(), max_wait_s=0.05
    )
    await budget.acquire(Budget.CREATE)
    with pytest.raises(BudgetExhausted, match=r"create budget within 0\.05s"):
        await budget.acquire(Budget.CREATE)


@pytest_asyncio.fixture
async def shared_pair(redis_prefix: str) -> AsyncIterator[tuple[RequestBudget, RequestBudget]]:
    """Two budgets as two worker processes would build them: one create a second, burst 2 (slow
    enough that a loaded machine's stalls cannot pass for, or refill, a token)."""
    rates = Rates(creates_per_min=60, requests_per_min=0, burst_s=2.0)
    pair = tuple(
        RequestBudget.build(rates, redis_url=MACHINE_REDIS_URL, prefix=redis_prefix)
        for _ in range(2)
    )
    yield pair[0], pair[1]
    for budget in pair:
        await budget.close()


async def test_two_processes_spend_one_shared_budget(
    shared_pair: tuple[RequestBudget, RequestBudget],
) -> None:
    first, second = shared_pair
    assert await first.acquire(Budget.CREATE) < 0.5
    assert await second.acquire(Budget.CREATE) < 0.5
    # The burst is spent for both: the next token is a second away, whoever asks.
    assert await first.acquire(Budget.CREATE) >= 0.5


async def test_a_429_seen_by_one_pauses_the_other(
    shared_pair: tuple[RequestBudget, RequestBudget],
) -> None:
    first, second = shared_pair
    await first.throttled(0.4)
    await first.throttled(0.01)  # never shortened by a later, shorter hint
    assert await second.acquire(Budget.CREATE) >= 0.3


async def test_without_redis_each_process_keeps_its_own_budget(redis_prefix: str) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    budget = RequestBudget.build(ONE_PER_S, redis_url=nowhere, prefix=redis_prefix)
    try:
        await budget.throttled(0.01)
        for _ in range(2):  # the local burst still applies
            assert await budget.acquire(Budget.CREATE) < 0.5
    finally:
        await budget.close()


@pytest_asyncio.fixture
async def budgeted(emulator: RunningEmulator) -> AsyncIterator[BudgetedProvider]:
    provider = BudgetedProvider(
        ReplicateProvider(
            api_token="r8_test", base_url=emulator.base_url, output_hosts=(emulator.host_port,)
        ),
        RequestBudget.build(Rates()),
    )
    yield provider
    await provider.close()


async def test_a_throttled_create_waits_out_the_pause_and_is_sent_again(
    budgeted: BudgetedProvider, emulator: RunningEmulator
) -> None:
    emulator.emulator.inject(Throttle(route=Route.CREATE, retry_after_s=1, times=1))
    throttled = m.PROVIDER_THROTTLED.labels("create")
    before = throttled._value.get()
    started = time.monotonic()

    created = await budgeted.create("stability-ai/sdxl", {"prompt": "a patient fox"})

    assert time.monotonic() - started >= 0.9  # the provider's Retry-After, for everyone
    assert created.id
    stats = emulator.emulator.stats_json()
    assert (stats["requests"]["create"], stats["predictions"]) == (2, 1)
    assert throttled._value.get() - before == 1


async def test_a_call_throttled_every_time_goes_back_to_the_job(
    budgeted: BudgetedProvider, emulator: RunningEmulator
) -> None:
    emulator.emulator.inject(Throttle(route=Route.GET, retry_after_s=0, times=None))
    with pytest.raises(ProviderError) as caught:
        await budgeted.get("no-matter")
    assert (caught.value.status, caught.value.transient) == (429, True)
    assert emulator.emulator.stats_json()["requests"]["get"] == MAX_TRIES


async def test_a_create_is_recorded_as_requested_only_once_its_token_is_in_hand(
    emulator: RunningEmulator,
) -> None:
    """The runner marks a create requested in ``before_send``; the marker look-up after a lost
    answer searches around that time, so it must be the send, not the start of a budget wait."""
    provider = BudgetedProvider(
        ReplicateProvider(api_token="r8_test", base_url=emulator.base_url),
        RequestBudget.build(Rates(creates_per_min=300, requests_per_min=0, burst_s=0.1)),
    )
    marks: list[float] = []

    async def requested() -> None:
        marks.append(time.monotonic())

    try:
        await provider.create("stability-ai/sdxl", {"prompt": "first"})  # spends the burst
        started = time.monotonic()
        emulator.emulator.inject(Throttle(route=Route.CREATE, retry_after_s=1, times=1))
        await provider.create("stability-ai/sdxl", {"prompt": "second"}, before_send=requested)
    finally:
        await provider.close()

    # 5 creates a second: the token came 0.2 s later; the 429's resend is marked anew.
    assert len(marks) == 2
    assert marks[0] - started >= 0.15
    assert marks[1] - marks[0] >= 0.9


def tokens_spent(budget: Budget) -> float:
    """Tokens handed out so far: every call that waited for the budget (the wait histogram's
    count, as /metrics shows it)."""
    value = REGISTRY.get_sample_value(
        "mediagen_provider_budget_wait_seconds_count", {"budget": budget.value}
    )
    return value or 0.0


async def test_a_read_answered_503_is_sent_again_each_time_within_the_budget(
    budgeted: BudgetedProvider, emulator: RunningEmulator
) -> None:
    """The official client would resend a GET answered 503/504 by itself, past the budget; here
    every request that reaches the provider spent a token."""
    created = await budgeted.create("stability-ai/sdxl", {"prompt": "an unlucky fox"})
    emulator.emulator.inject(ServerError(route=Route.GET, status=503, times=1))
    emulator.emulator.inject(ServerError(route=Route.GET, status=504, times=1))
    before = tokens_spent(Budget.OTHER)

    found = await budgeted.get(created.id)

    assert found.id == created.id
    gets = emulator.emulator.stats_json()["requests"]["get"]
    assert gets == 3 == tokens_spent(Budget.OTHER) - before


async def test_a_read_that_stays_unavailable_goes_back_to_the_caller(
    budgeted: BudgetedProvider, emulator: RunningEmulator
) -> None:
    emulator.emulator.inject(ServerError(route=Route.GET, status=503, times=None))
    before = tokens_spent(Budget.OTHER)
    with pytest.raises(ProviderError) as caught:
        await budgeted.get("no-matter")
    assert (caught.value.status, caught.value.transient) == (503, True)
    gets = emulator.emulator.stats_json()["requests"]["get"]
    assert gets == MAX_TRIES == tokens_spent(Budget.OTHER) - before


@pytest.mark.parametrize("status", [503, 504])
@pytest.mark.parametrize("after", [False, True])
async def test_a_create_answered_503_or_504_is_sent_once_and_left_ambiguous(
    budgeted: BudgetedProvider, emulator: RunningEmulator, status: int, after: bool
) -> None:
    """``after``: the prediction was made and only its answer replaced. Either way nothing
    proves it was not made, so the create is not repeated: the worker looks for it by marker."""
    emulator.emulator.inject(ServerError(route=Route.CREATE, status=status, after=after))
    before = tokens_spent(Budget.CREATE)
    with pytest.raises(ProviderError) as caught:
        await budgeted.create("stability-ai/sdxl", {"prompt": "a fox made once"})
    assert (caught.value.status, caught.value.ambiguous) == (status, True)
    stats = emulator.emulator.stats_json()
    assert stats["requests"]["create"] == 1 == tokens_spent(Budget.CREATE) - before
    assert stats["predictions"] == (1 if after else 0)
