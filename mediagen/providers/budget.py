"""One request budget for every worker: each call to the provider spends a token first.

The provider counts per account, whichever worker sends (:mod:`mediagen.providers.rates`). A
call takes a token from its budget's bucket, asleep until there is one; with REDIS_URL the
buckets are the shared ones of :mod:`mediagen.limits.redis_rate` (one Lua script, Redis's
clock), so the budget holds across worker processes. A 429, seen by any worker, pauses every
worker: the pause is a Redis key that expires when it ends (in-process when embedded).

Waiters stand in one line per budget and process (an ``asyncio.Lock``, first come first
served) and only the head asks the bucket: 2,000 waiting calls cost one bucket call per token,
not 2,000.

Redis unreachable: each process falls back to its own buckets at the full rate (a warning
says so) and to its own pause; calls keep going, and the provider's 429s, should several
processes now overspend, pause each of them. A limiter must not stop the work it paces.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from mediagen.errors import Unavailable
from mediagen.limits.bucket import Decision
from mediagen.limits.rate import LocalRateLimiter, RateLimiter
from mediagen.limits.redis_rate import REDIS_TIMEOUT_S, RedisRateLimiter
from mediagen.metrics import definitions as m
from mediagen.providers.rates import Budget, Rates

log = logging.getLogger(__name__)

#: A 429 without a hint pauses everyone this long; no hint pauses longer than the maximum.
DEFAULT_PAUSE_S = 2.0
MAX_PAUSE_S = 60.0

Sleep = Callable[[float], Awaitable[None]]


class BudgetExhausted(Exception):
    """No token came within the budget's maximum wait."""


class Pauses(Protocol):
    """Where a 429's "everyone wait" is kept."""

    async def remaining_s(self) -> float:
        """Seconds the pause still lasts; 0 when there is none."""
        ...

    async def pause(self, seconds: float) -> None:
        """Pause every caller for ``seconds`` from now, unless a longer pause is on."""
        ...

    async def close(self) -> None: ...


class LocalPauses:
    """The pause of this process alone."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until_s = 0.0

    async def remaining_s(self) -> float:
        return max(0.0, self._until_s - self._clock())

    async def pause(self, seconds: float) -> None:
        self._until_s = max(self._until_s, self._clock() + seconds)

    async def close(self) -> None:
        pass


class RedisPauses:
    """The pause of every process: a key ``<prefix>pause`` that expires when it ends. Redis
    unreachable: this process's own pause stands in (see the module docstring)."""

    def __init__(self, url: str, *, prefix: str, timeout_s: float = REDIS_TIMEOUT_S) -> None:
        self.key = f"{prefix}pause"
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._local = LocalPauses()

    async def remaining_s(self) -> float:
        local_s = await self._local.remaining_s()
        try:
            ttl_ms = await self._redis.pttl(self.key)
        except (RedisError, OSError) as exc:
            log.warning("provider budget pause not read (Redis unreachable): %s", exc)
            return local_s
        return max(local_s, ttl_ms / 1000 if ttl_ms > 0 else 0.0)

    async def pause(self, seconds: float) -> None:
        await self._local.pause(seconds)
        ttl_ms = max(1, round(seconds * 1000))
        try:
            # Only ever lengthened: a later 429 with a shorter hint must not cut a pause short.
            # (Two steps, not atomic: two 429s at once may keep the shorter; harmless.)
            created = await self._redis.set(self.key, b"1", px=ttl_ms, nx=True)
            if not created and await self._redis.pttl(self.key) < ttl_ms:
                await self._redis.pexpire(self.key, ttl_ms)
        except (RedisError, OSError) as exc:
            log.warning("provider budget pause not shared (Redis unreachable): %s", exc)

    async def close(self) -> None:
        await self._redis.aclose()


class RequestBudget:
    """Tokens per :class:`Budget` from ``limiters`` (a budget without one is unlimited), and
    the shared pause. ``fallback`` limiters stand in when a shared one is unreachable."""

    def __init__(
        self,
        limiters: Mapping[Budget, RateLimiter],
        pauses: Pauses,
        *,
        fallback: Mapping[Budget, RateLimiter] | None = None,
        max_wait_s: float = 600.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._limiters = dict(limiters)
        self._fallback = dict(fallback or {})
        self._pauses = pauses
        self._max_wait_s = max_wait_s
        self._sleep = sleep
        self._lines = {budget: asyncio.Lock() for budget in Budget}

    @classmethod
    def build(
        cls,
        rates: Rates,
        *,
        redis_url: str | None = None,
        prefix: str = "mediagen:provider-budget:",
        max_wait_s: float = 600.0,
    ) -> RequestBudget:
        """In-process buckets, or with ``redis_url`` shared ones under ``prefix``."""
        local: dict[Budget, RateLimiter] = {}
        shared: dict[Budget, RateLimiter] = {}
        for budget in Budget:
            bucket = rates.bucket(budget)
            if bucket is None:
                continue
            local[budget] = LocalRateLimiter(bucket)
            if redis_url:
                shared[budget] = RedisRateLimiter(redis_url, bucket, prefix=prefix)
        if not redis_url:
            return cls(local, LocalPauses(), max_wait_s=max_wait_s)
        pauses = RedisPauses(redis_url, prefix=prefix)
        return cls(shared, pauses, fallback=local, max_wait_s=max_wait_s)

    async def acquire(self, budget: Budget) -> float:
        """Wait for a token of ``budget`` (and for any pause to end); returns the seconds
        waited. :class:`BudgetExhausted` after ``max_wait_s`` (0: no bound)."""
        limiter = self._limiters.get(budget)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._max_wait_s or None), self._lines[budget]:
                while True:
                    paused_s = await self._pauses.remaining_s()
                    if paused_s > 0:
                        await self._sleep(paused_s)
                        continue
                    if limiter is None:  # no budget, but a 429's pause holds all the same
                        break
                    decision = await self._take(budget, limiter)
                    if decision.allowed:
                        break
                    await self._sleep(decision.retry_after_s)
        except TimeoutError as exc:
            raise BudgetExhausted(
                f"no room in the provider's {budget} budget within {self._max_wait_s:g}s"
            ) from exc
        waited_s = time.perf_counter() - started
        m.PROVIDER_BUDGET_WAIT.labels(budget.value).observe(waited_s)
        return waited_s

    async def throttled(self, retry_after_s: float | None) -> float:
        """The provider answered 429: pause every caller for its hint (bounded); returns the
        pause."""
        seconds = min(MAX_PAUSE_S, DEFAULT_PAUSE_S if retry_after_s is None else retry_after_s)
        if seconds > 0:
            await self._pauses.pause(seconds)
        return seconds

    async def _take(self, budget: Budget, limiter: RateLimiter) -> Decision:
        try:
            return await limiter.take(budget.value)
        except Unavailable:
            fallback = self._fallback.get(budget)
            if fallback is None:
                raise
            return await fallback.take(budget.value)

    async def close(self) -> None:
        await self._pauses.close()
        for limiter in (*self._limiters.values(), *self._fallback.values()):
            await limiter.close()
