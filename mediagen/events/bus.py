"""The event-bus seam and its in-process implementation.

A bus carries each job event (its serialized ``JobEvent``) to every subscriber of that job, in
any process. It is a wake-up channel, not a log: messages may be repeated, and lost, but never
silently: a subscriber learns of a possible loss (a reconnect, a full buffer) from ``get``
returning None, or sees a jump in the sequence. Readers (WatchJob, the worker's cancel watch)
dedupe by sequence and read the store then, and only then.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from mediagen.v1 import job_pb2

#: Per-subscriber buffer; a reader that falls further behind loses events (and re-reads them
#: from the store), rather than making publishers wait.
QUEUE_SIZE = 256


class Subscription:
    """Events of one job, as they arrive, for one reader. ``get`` waits for the next one, or
    for word that some may have been missed (None): the bus reconnected, or this reader fell
    behind.

    A deque and the reader's one waiting future rather than an ``asyncio.Queue``: a delivery
    is on the path of every event to every stream, and this is all of it that is needed."""

    def __init__(self) -> None:
        self._items: deque[job_pb2.JobEvent | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._overflowed = False
        #: The highest sequence the bus has brought (read or not yet): a reader behind it
        #: will catch up without anyone waking it.
        self.newest = 0

    def deliver(self, event: job_pb2.JobEvent) -> None:
        self.newest = max(self.newest, event.sequence)
        self._put(event)

    def missed(self) -> None:
        """Tell the reader that events may have been lost (it reads the store)."""
        self._put(None)

    def _put(self, item: job_pb2.JobEvent | None) -> None:
        if len(self._items) >= QUEUE_SIZE:
            # A reader this far behind loses the event; its next get says so.
            self._overflowed = True
            return
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> job_pb2.JobEvent | None:
        """The next event, or None when events may have been missed since the last one."""
        while not self._items and not self._overflowed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._overflowed:
            self._overflowed = False
            return None
        return self._items.popleft()


class EventBus(Protocol):
    """Publish job events; subscribe to one job's events."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, event: job_pb2.JobEvent) -> None:
        """Send ``event`` (whose ``job.id`` names the job) to its subscribers; never raises for
        a delivery problem (the store is the truth)."""
        ...

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[Subscription]:
        """Receive the job's events while the context is open."""
        ...


class LocalFanout:
    """Subscriptions by job id within one process (shared by both bus implementations)."""

    def __init__(self) -> None:
        self._subs: defaultdict[str, set[Subscription]] = defaultdict(set)

    def add(self, job_id: str) -> tuple[Subscription, bool]:
        """A new subscription; the flag says whether it is the job's first in this process."""
        sub = Subscription()
        first = not self._subs[job_id]
        self._subs[job_id].add(sub)
        return sub, first

    def remove(self, job_id: str, sub: Subscription) -> bool:
        """Drop ``sub``; the flag says whether the job has no subscriber left here."""
        subs = self._subs.get(job_id)
        if subs is None:
            return False
        subs.discard(sub)
        if subs:
            return False
        del self._subs[job_id]
        return True

    def deliver(self, event: job_pb2.JobEvent) -> None:
        for sub in list(self._subs.get(event.job.id, ())):
            sub.deliver(event)

    def missed(self, job_ids: Iterable[str] | None = None) -> None:
        """Tell the subscribers of ``job_ids`` (None: of every job) that events may be lost."""
        for job_id in self.job_ids() if job_ids is None else job_ids:
            for sub in list(self._subs.get(job_id, ())):
                sub.missed()

    def job_ids(self) -> list[str]:
        """The jobs someone here is subscribed to."""
        return list(self._subs)


class InProcessBus:
    """Fan-out inside one process (the embedded mode)."""

    def __init__(self) -> None:
        self._fanout = LocalFanout()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish(self, event: job_pb2.JobEvent) -> None:
        self._fanout.deliver(event)

    @asynccontextmanager
    async def _subscribe(self, job_id: str) -> AsyncIterator[Subscription]:
        sub, _ = self._fanout.add(job_id)
        try:
            yield sub
        finally:
            self._fanout.remove(job_id, sub)

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[Subscription]:
        return self._subscribe(job_id)
