"""Event bus over Redis pub/sub, so WatchJob in any API process sees any worker's events.

One pub/sub connection per process, subscribed to the channels of the jobs someone in this
process is watching; a reader task hands each message to the local subscribers. Subscribing
never fails: while Redis is down a subscription is local only, and the reader, reconnecting with
backoff, subscribes its channel once Redis is back (redis-py itself re-subscribes the channels
it had). Every reconnection tells the local subscribers that they may have missed events, so
they read the store once instead of re-reading it on a timer.

Publishing never fails a job either: an event Redis refused is kept (the newest per job) and
sent again, with backoff, until Redis takes it; a subscriber that sees the sequence jump reads
what it missed from the store. Each outage is said once, and its end once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError

from mediagen.backoff import exponential_delays
from mediagen.events.bus import LocalFanout, Subscription
from mediagen.redis_retry import stale_connection_retry
from mediagen.v1 import job_pb2

log = logging.getLogger(__name__)

#: The reader's reconnection backoff (full jitter): at most the base at first, doubling to the cap.
RECONNECT_BASE_S = 0.2
RECONNECT_MAX_S = 5.0
#: Unpublished events kept while Redis refuses them (the newest of each job).
MAX_UNSENT = 10_000


class _ReconnectingPubSub(PubSub):
    """redis-py's PubSub that also says when its connection was made again (silently, inside a
    retried command, or after an outage): messages sent meanwhile are gone."""

    def __init__(self, redis: aioredis.Redis, on_reconnect: Callable[[], None]) -> None:
        super().__init__(redis.connection_pool, ignore_subscribe_messages=True)
        self._on_reconnect = on_reconnect

    async def on_connect(self, connection: Connection) -> None:
        await super().on_connect(connection)  # re-subscribes first: nothing new is missed
        self._on_reconnect()


class RedisBus:
    """Job events over Redis pub/sub, one channel per job (``<prefix><job id>``)."""

    def __init__(self, url: str, *, channel_prefix: str = "mediagen:events:") -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_keepalive=True, retry=stale_connection_retry()
        )
        self._prefix = channel_prefix
        self._fanout = LocalFanout()
        self._pubsub = _ReconnectingPubSub(self._redis, self._reconnected)
        #: Whether a local subscription may lack its Redis one (a subscribe failed, or the
        #: connection was made again): only then does the reader compare them, not per message.
        self._maybe_missing = False
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._unsent: dict[str, job_pb2.JobEvent] = {}
        self._resender: asyncio.Task[None] | None = None

    def _channel(self, job_id: str) -> str:
        return f"{self._prefix}{job_id}"

    def _reconnected(self) -> None:
        self._maybe_missing = True
        self._fanout.missed()

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read(), name="redis-bus-reader")

    async def close(self) -> None:
        for task in (self._reader, self._resender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._redis.aclose()

    async def publish(self, event: job_pb2.JobEvent) -> None:
        if self._resender is None and await self._send(event):
            return
        # Kept for the resender; a newer event of the job replaces an older one.
        kept = self._unsent.get(event.job.id)
        if (kept is None and len(self._unsent) < MAX_UNSENT) or (
            kept is not None and kept.sequence < event.sequence
        ):
            self._unsent[event.job.id] = event
        if self._resender is None:
            self._resender = asyncio.create_task(self._resend(), name="redis-bus-resender")

    async def _send(self, event: job_pb2.JobEvent) -> bool:
        try:
            await self._redis.publish(self._channel(event.job.id), event.SerializeToString())
        except (RedisError, OSError) as exc:
            if self._resender is None:
                log.warning("events not published while Redis is unreachable: %s", exc)
            return False
        return True

    async def _resend(self) -> None:
        """Send the kept events, with backoff, until Redis takes them all."""
        delays = exponential_delays(RECONNECT_BASE_S, RECONNECT_MAX_S)
        try:
            while self._unsent:
                await asyncio.sleep(next(delays))
                for job_id, event in list(self._unsent.items()):
                    if not await self._send(event):
                        break
                    if self._unsent.get(job_id) is event:
                        del self._unsent[job_id]
        finally:
            self._resender = None
        log.info("events published again")

    @asynccontextmanager
    async def _subscribe(self, job_id: str) -> AsyncIterator[Subscription]:
        sub, first = self._fanout.add(job_id)
        try:
            if first:
                try:
                    async with self._lock:
                        await self._pubsub.subscribe(self._channel(job_id))
                except (RedisError, OSError) as exc:
                    # Redis is down: the reader subscribes it when Redis is back.
                    self._maybe_missing = True
                    log.debug("job=%s subscribed locally only: %s", job_id, exc)
                self._subscribed.set()
            yield sub
        finally:
            if self._fanout.remove(job_id, sub):
                with contextlib.suppress(RedisError, OSError):
                    async with self._lock:
                        await self._pubsub.unsubscribe(self._channel(job_id))

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[Subscription]:
        return self._subscribe(job_id)

    async def _subscribe_missing(self) -> None:
        """Subscribe the channels of local subscriptions made while Redis was down."""
        if not self._maybe_missing:
            return
        self._maybe_missing = False  # set again if the subscribe below fails
        try:
            await self._subscribe_channels()
        except BaseException:
            self._maybe_missing = True
            raise

    async def _subscribe_channels(self) -> None:
        have = {_text(name) for name in self._pubsub.channels}
        missing = [
            channel for channel in map(self._channel, self._fanout.job_ids()) if channel not in have
        ]
        if missing:
            async with self._lock:
                await self._pubsub.subscribe(*missing)
            # Subscribed only now: what was published before is missed.
            self._fanout.missed(channel.removeprefix(self._prefix) for channel in missing)

    async def _read(self) -> None:
        outage = None  # the reconnection delays while Redis is unreachable
        while True:
            await self._subscribed.wait()
            try:
                await self._subscribe_missing()
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                if outage is None:
                    log.warning(
                        "event bus: Redis unreachable (%s); reconnecting (watchers read the "
                        "store meanwhile)",
                        exc,
                    )
                    outage = exponential_delays(RECONNECT_BASE_S, RECONNECT_MAX_S)
                await asyncio.sleep(next(outage))
                continue
            except RuntimeError:
                # redis-py raises this when there are no subscriptions left at the moment.
                await asyncio.sleep(0.05)
                continue
            if outage is not None:
                outage = None
                log.info("event bus: Redis reachable again")
            if message is None or message.get("type") != "message":
                continue
            try:
                event = job_pb2.JobEvent.FromString(message["data"])
            except Exception:  # a foreign or corrupt message must not stop the reader
                log.warning("ignoring malformed event on %s", message.get("channel"))
                continue
            self._fanout.deliver(event)


def _text(name: object) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)
