"""taskiq-redis's stream broker, made to outlive Redis.

``RedisStreamBroker.listen`` raises on the first Redis error, which ends taskiq's receiver and
with it the worker: Redis stopped, restarted empty (the consumer group is gone: ``NOGROUP``), or
the stream key deleted under a blocking read (``UNBLOCKED the stream key no longer exists``).
Here ``listen`` survives all of them: while Redis is unreachable it says so (``on_state``) and
reconnects with capped, jittered backoff; it recreates the consumer group if it is missing; then
it says the queue is available again and goes on reading. Messages Redis lost are not its
business: the database is the truth, and the worker answers "available again" with a reconciler
sweep (``reference/taskiq.md`` §10).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from taskiq import AckableMessage, BrokerMessage
from taskiq_redis import RedisStreamBroker

from mediagen.backoff import exponential_delays

log = logging.getLogger(__name__)

#: Reconnection backoff (full jitter): at most the base at first, doubling to the cap.
RECONNECT_BASE_S = 0.2
RECONNECT_MAX_S = 5.0

#: Called with False when the queue becomes unreachable and True when it is back.
QueueStateListener = Callable[[bool], None]


def _group_gone(exc: RedisError) -> bool:
    """The stream or its consumer group vanished (Redis restarted empty, or the key deleted)."""
    text = str(exc)
    return isinstance(exc, ResponseError) and text.startswith(("NOGROUP", "UNBLOCKED"))


class ResilientStreamBroker(RedisStreamBroker):
    """A ``RedisStreamBroker`` whose ``listen`` never raises a Redis error.

    ``on_state`` (set by the worker) hears every change of reachability; recreating a vanished
    consumer group counts as becoming available again, since the messages went with it.
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.on_state: QueueStateListener | None = None
        self.available = True
        # One client over the broker's pool for every send (it does not own the pool, which
        # the broker's shutdown closes).
        self._sender = Redis(connection_pool=self.connection_pool)

    async def kick(self, message: BrokerMessage) -> None:
        """The XADD taskiq sends, without the Redis client it makes and closes per message
        (a few per cent of a submission's CPU)."""
        await self._sender.xadd(
            message.labels.get("queue_name") or self.queue_name,
            {b"data": message.message},
            maxlen=self.maxlen,
            approximate=self.approximate,
        )

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        while True:
            try:
                # aclosing: a listener closed mid-read gives its Redis connection back at once.
                async with contextlib.aclosing(super().listen()) as messages:
                    async for message in messages:
                        yield message
            except (RedisError, OSError) as exc:
                if isinstance(exc, RedisError) and _group_gone(exc):
                    log.warning("queue %s: its consumer group is gone (%s)", self.queue_name, exc)
                else:
                    self._set_available(False, exc)
                await self._reconnect()

    async def _reconnect(self) -> None:
        """Until Redis answers and the consumer group exists (created at the stream's end, as
        taskiq does: whatever was in it is re-sent by the reconciler's sweep)."""
        delays = exponential_delays(RECONNECT_BASE_S, RECONNECT_MAX_S)
        while True:
            try:
                created = await self._ensure_group()
            except (RedisError, OSError) as exc:
                self._set_available(False, exc)
                await asyncio.sleep(next(delays))
                continue
            if created:
                log.info("queue %s: consumer group created again", self.queue_name)
            self._set_available(True, None, changed=created)
            return

    async def _ensure_group(self) -> bool:
        """Create the consumer group (and the stream) if missing; whether it was."""
        async with Redis(connection_pool=self.connection_pool) as redis:
            try:
                await redis.xgroup_create(
                    self.queue_name,
                    self.consumer_group_name,
                    id=self.consumer_id,
                    mkstream=self.mkstream,
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
                return False
        return True

    def _set_available(
        self, available: bool, cause: BaseException | None, *, changed: bool = False
    ) -> None:
        """Record reachability; log and tell ``on_state`` only when it changes (or when the
        group had to be recreated, which loses messages just as an outage does)."""
        if available == self.available and not changed:
            return
        was = self.available
        self.available = available
        if available:
            if not was:
                log.info("queue %s: Redis reachable again; consuming", self.queue_name)
        else:
            log.warning(
                "queue %s: Redis unreachable (%s); reconnecting, in-flight jobs go on",
                self.queue_name,
                cause,
            )
        if self.on_state is not None:
            self.on_state(available)
