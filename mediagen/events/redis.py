"""Event bus over Redis pub/sub, so WatchJob in any API process sees any worker's events.

One pub/sub connection per process, subscribed to the channels of the jobs someone in this
process is watching; a reader task hands each message to the local subscribers. Publishing never
fails a job: if Redis is down the event is only logged as lost (watchers re-read the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from mediagen.events.bus import LocalFanout, Subscription
from mediagen.v1 import job_pb2

log = logging.getLogger(__name__)


class RedisBus:
    """Job events over Redis pub/sub, one channel per job (``<prefix><job id>``)."""

    def __init__(self, url: str, *, channel_prefix: str = "mediagen:events:") -> None:
        self._redis = aioredis.Redis.from_url(url, socket_keepalive=True)
        self._prefix = channel_prefix
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._fanout = LocalFanout()
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._lock = asyncio.Lock()

    def _channel(self, job_id: str) -> str:
        return f"{self._prefix}{job_id}"

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read(), name="redis-bus-reader")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._redis.aclose()

    async def publish(self, event: job_pb2.JobEvent) -> None:
        try:
            await self._redis.publish(self._channel(event.job.id), event.SerializeToString())
        except (RedisError, OSError) as exc:
            log.warning("event %s/%d not published: %s", event.job.id, event.sequence, exc)

    @asynccontextmanager
    async def _subscribe(self, job_id: str) -> AsyncIterator[Subscription]:
        sub, first = self._fanout.add(job_id)
        try:
            if first:
                async with self._lock:
                    await self._pubsub.subscribe(self._channel(job_id))
                    self._subscribed.set()
            yield sub
        finally:
            if self._fanout.remove(job_id, sub):
                with contextlib.suppress(RedisError, OSError):
                    async with self._lock:
                        await self._pubsub.unsubscribe(self._channel(job_id))

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[Subscription]:
        return self._subscribe(job_id)

    async def _read(self) -> None:
        while True:
            await self._subscribed.wait()
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                log.warning("event bus read failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            except RuntimeError:
                # redis-py raises this when there are no subscriptions left at the moment.
                await asyncio.sleep(0.05)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                event = job_pb2.JobEvent.FromString(message["data"])
            except Exception:  # a foreign or corrupt message must not stop the reader
                log.warning("ignoring malformed event on %s", message.get("channel"))
                continue
            self._fanout.deliver(event)
