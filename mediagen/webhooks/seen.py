"""Webhook messages already handled, for a while: Replicate may deliver one more than once.

Only a saving: a repeat that slips through wakes a worker that re-reads the prediction and
finds nothing new. The window is the timestamp tolerance (plus a minute), since anything older
is refused by its timestamp anyway. In-process in embedded mode; with Redis (``SET NX EX``),
shared by every gateway. If Redis fails, a message counts as new.
"""

from __future__ import annotations

import logging
from typing import Protocol

import redis.asyncio as aioredis
from cachetools import TTLCache
from redis.exceptions import RedisError

from mediagen.redis_retry import stale_connection_retry

log = logging.getLogger(__name__)

#: Messages remembered in one process; the oldest are forgotten first beyond this.
LOCAL_MAX_KEYS = 100_000


class Seen(Protocol):
    async def first(self, key: str) -> bool:
        """True the first time ``key`` is given within the window."""
        ...

    async def close(self) -> None: ...


class LocalSeen:
    def __init__(self, window_s: float) -> None:
        self._keys: TTLCache[str, bool] = TTLCache(LOCAL_MAX_KEYS, window_s)

    async def first(self, key: str) -> bool:
        if key in self._keys:
            return False
        self._keys[key] = True
        return True

    async def close(self) -> None:
        return None


class RedisSeen:
    def __init__(self, url: str, window_s: float, *, prefix: str) -> None:
        self._redis = aioredis.Redis.from_url(url, retry=stale_connection_retry())
        self._window_ms = max(1, int(window_s * 1000))
        self._prefix = prefix

    async def first(self, key: str) -> bool:
        try:
            added = await self._redis.set(f"{self._prefix}{key}", b"1", nx=True, px=self._window_ms)
        except (RedisError, OSError) as exc:
            log.warning("webhook dedupe unavailable (%s); treating the delivery as new", exc)
            return True
        return bool(added)

    async def close(self) -> None:
        await self._redis.aclose()
