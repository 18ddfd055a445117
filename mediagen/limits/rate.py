"""The rate-limiter seam and its in-process backend.

A :class:`RateLimiter` takes one token from a key's bucket and says whether it could. The
in-process one (embedded mode) keeps buckets in a dict on the monotonic clock; the Redis one
(:mod:`mediagen.limits.redis_rate`) shares them between API processes. ``mediagen.wiring``
picks one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from mediagen.limits.bucket import Bucket, Decision, Level, level_at, take

#: Past this many buckets, full ones are dropped (a full bucket is the same as none).
_PRUNE_ABOVE = 10_000


class RateLimiter(Protocol):
    #: The limit every key gets.
    bucket: Bucket

    async def take(self, key: str) -> Decision:
        """Take one token from ``key``'s bucket. Raises Unavailable if the state cannot be
        reached (a shared limit that cannot be checked is not granted)."""
        ...

    async def close(self) -> None: ...


class LocalRateLimiter:
    """Buckets in this process's memory: exact within one process, nothing shared."""

    def __init__(self, bucket: Bucket, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.bucket = bucket
        self._clock = clock
        self._levels: dict[str, Level] = {}

    async def take(self, key: str) -> Decision:
        now_s = self._clock()
        decision = take(self.bucket, self._levels.get(key), now_s)
        self._levels[key] = decision.level
        if len(self._levels) > _PRUNE_ABOVE:
            self._prune(now_s)
        return decision

    def _prune(self, now_s: float) -> None:
        full = [
            key
            for key, level in self._levels.items()
            if level_at(self.bucket, level, now_s) >= self.bucket.burst
        ]
        for key in full:
            del self._levels[key]

    async def close(self) -> None:
        self._levels.clear()
