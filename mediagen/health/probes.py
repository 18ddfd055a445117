"""Probes that need a connection of their own. The database and storage probes are methods of
:class:`mediagen.jobs.database.Database` and the storage backends."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


class RedisPing:
    """``PING`` on one small connection pool of its own, each call bounded by ``timeout_s``.

    Its own pool, so the answer is about Redis, not about whether the bus or the queue has a
    free connection; a connection a Redis restart broke is dropped and the next round's PING
    reconnects.
    """

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            max_connections=2,
            # No retries: the next round is the retry, and a failure must show as one.
            retry=Retry(NoBackoff(), 0),
        )

    async def __call__(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
