"""The watch sweep: a periodic check that no open WatchJob stream waits on an event it missed.

Streams read the store only when the bus wakes them. A worker killed between its commit and its
publish leaves an event no bus message announces; the sweep finds it. While streams are open,
every ``interval_s`` it reads the latest sequence of every watched job in one statement (per
:data:`CHUNK` jobs) and wakes only the streams that have sent less and have not been brought more
by the bus either, through their subscription's ``missed`` (they then read the store as on a
sequence jump). Many streams of one job cost one row.
The same registry lets a stopping server wake every stream at once (:meth:`WatchSweep.wake_all`).

Tenancy: the query is not scoped, but it only decides whom to wake; each stream reads the events
with its own caller's scope, and it was let in only after that scope found the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence

from mediagen.events.bus import Subscription

log = logging.getLogger(__name__)

#: Job ids per statement: far below PostgreSQL's parameter limit, small enough to stay quick.
CHUNK = 1000

#: The latest sequence of each job that exists, by id (a store method).
LatestSequences = Callable[[Sequence[str]], Awaitable[Mapping[str, int]]]


class Watch:
    """One open stream: the last sequence it sent, and how to wake it."""

    def __init__(self, subscription: Subscription, last: int) -> None:
        self.subscription = subscription
        #: Kept current by the stream as it sends.
        self.last = last


class WatchSweep:
    """Open streams by job, and the one task that sweeps them while there are any."""

    def __init__(self, latest: LatestSequences, interval_s: float) -> None:
        self._latest = latest
        self._interval_s = interval_s
        self._watches: defaultdict[str, set[Watch]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        #: The task whose sweep is under way, if any.
        self._busy: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def watching(self, job_id: str, subscription: Subscription, last: int) -> Iterator[Watch]:
        """Sweep for this stream while the block runs (no sweep at all if ``interval_s`` is 0)."""
        watch = Watch(subscription, last)
        self._watches[job_id].add(watch)
        if self._interval_s > 0 and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run(), name="watch-sweep")
        try:
            yield watch
        finally:
            watches = self._watches[job_id]
            watches.discard(watch)
            if not watches:
                del self._watches[job_id]
            if not self._watches and self._task is not None:
                # Nothing left to sweep; the next stream starts it again. A sweep under way
                # ends by itself (cancelling a query would cost its connection).
                if self._task is not self._busy:
                    self._task.cancel()
                self._task = None

    def wake_all(self) -> None:
        """Wake every open stream, events or not (the server is stopping: each then sees it)."""
        for watches in self._watches.values():
            for watch in watches:
                watch.subscription.missed()

    async def sweep(self) -> int:
        """Wake every stream whose job has newer events than it sent or the bus brought; how many
        were woken."""
        woken = 0
        job_ids = list(self._watches)
        for start in range(0, len(job_ids), CHUNK):
            chunk = job_ids[start : start + CHUNK]
            latest = await self._latest(chunk)
            for job_id in chunk:
                # A job gone (deleted) wakes its streams too: their read ends them NOT_FOUND.
                newest = latest.get(job_id)
                for watch in list(self._watches.get(job_id, ())):
                    # A stream still sending what the bus brought is behind, not missing
                    # anything: waking it would only make it read the store (a burst of them,
                    # when a busy server is behind, would make it later still).
                    if newest is None or newest > max(watch.last, watch.subscription.newest):
                        watch.subscription.missed()
                        woken += 1
        return woken

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            self._busy = asyncio.current_task()
            try:
                await self.sweep()
            except Exception:
                # The database may be down; streams still get what the bus carries. Next time.
                log.warning("watch sweep failed; trying again in %ss", self._interval_s)
            finally:
                self._busy = None
            if self._task is not asyncio.current_task():
                return  # every stream closed meanwhile (a newer task may sweep for new ones)
