"""Both rate-limiter backends: the in-process one and the Redis one (the machine's Redis, keys
under a unique prefix; a private redis-server for the outage)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from mediagen.errors import Unavailable
from mediagen.limits.bucket import Bucket
from mediagen.limits.rate import LocalRateLimiter, RateLimiter
from mediagen.limits.redis_rate import RedisRateLimiter
from tests.fixtures.redis_server import MACHINE_REDIS_URL, PrivateRedis

BUCKET = Bucket(rate_per_s=2.0, burst=5)


class FakeClock:
    def __init__(self, now_s: float = 1000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


LimiterFactory = Callable[[Bucket, Callable[[], float] | None], RateLimiter]


@pytest.fixture(params=["local", "redis"])
async def make_limiter(
    request: pytest.FixtureRequest, redis_prefix: str
) -> AsyncIterator[LimiterFactory]:
    made: list[RateLimiter] = []

    def make(bucket: Bucket, clock: Callable[[], float] | None) -> RateLimiter:
        limiter: RateLimiter
        if request.param == "local":
            limiter = LocalRateLimiter(bucket, clock=clock or time.monotonic)
        else:
            limiter = RedisRateLimiter(MACHINE_REDIS_URL, bucket, prefix=redis_prefix, clock=clock)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()


async def test_the_same_timeline_on_every_backend(make_limiter: LimiterFactory) -> None:
    clock = FakeClock()
    limiter = make_limiter(BUCKET, clock)
    seen = []
    for _ in range(12):  # every 0.25 s, rate 2/s, burst 5
        decision = await limiter.take("tenant-a")
        seen.append((decision.allowed, round(decision.retry_after_s, 6)))
        clock.now_s += 0.25
    assert seen == [(True, 0.0)] * 9 + [(False, 0.25), (True, 0.0), (False, 0.25)]


async def test_tenants_have_their_own_buckets(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(Bucket(rate_per_s=0.01, burst=2), FakeClock())
    assert [(await limiter.take("a")).allowed for _ in range(3)] == [True, True, False]
    assert (await limiter.take("b")).allowed


async def test_redis_buckets_run_on_the_servers_clock_and_expire(redis_prefix: str) -> None:
    limiter = RedisRateLimiter(MACHINE_REDIS_URL, Bucket(0.5, 3), prefix=redis_prefix)
    try:
        decisions = [await limiter.take("t") for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        # Empty at 0.5 tokens/s: two seconds to the next token, less what has passed.
        assert 1.5 < decisions[-1].retry_after_s <= 2.0
        client = aioredis.Redis.from_url(MACHINE_REDIS_URL)
        try:
            ttl_ms = await client.pttl(limiter.key("t"))
        finally:
            await client.aclose()
        # Expires once it would be full again (3 tokens / 0.5 per s = 6 s) plus a second.
        assert 5_000 < ttl_ms <= 7_000
    finally:
        await limiter.close()


async def test_many_processes_share_one_redis_bucket(redis_prefix: str) -> None:
    """Two limiters (two connections, as two API processes) racing for one bucket."""
    bucket = Bucket(rate_per_s=0.001, burst=10)
    limiters = [RedisRateLimiter(MACHINE_REDIS_URL, bucket, prefix=redis_prefix) for _ in range(2)]
    try:
        decisions = await asyncio.gather(*(limiters[i % 2].take("shared") for i in range(40)))
        assert sum(d.allowed for d in decisions) == 10
    finally:
        for limiter in limiters:
            await limiter.close()


async def test_redis_down_is_unavailable_and_recovers(private_redis: PrivateRedis) -> None:
    limiter = RedisRateLimiter(private_redis.url, Bucket(1.0, 2))
    try:
        assert (await limiter.take("t")).allowed
        private_redis.stop()
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await limiter.take("t")
        assert time.monotonic() - started < 5  # refused promptly, not hung
        assert caught.value.retry_after_s > 0
        assert "Redis unreachable" in caught.value.message
        private_redis.start()  # same port, empty: the bucket starts full again
        assert (await limiter.take("t")).allowed
    finally:
        await limiter.close()


async def test_a_redis_restart_between_takes_fails_no_call(private_redis: PrivateRedis) -> None:
    limiter = RedisRateLimiter(private_redis.url, Bucket(1.0, 2))
    try:
        assert (await limiter.take("t")).allowed
        private_redis.stop()
        private_redis.start()  # nothing was called meanwhile: the pooled connection is stale
        assert (await limiter.take("t")).allowed
    finally:
        await limiter.close()
