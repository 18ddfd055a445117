"""Retention: finished jobs older than ``MEDIAGEN_RETENTION_DAYS`` are deleted, with their events,
media rows and media files.

Every ``interval_s`` a pass takes batches of expired jobs (:mod:`mediagen.jobs.expired`), deletes
their objects from storage, then their rows, until none is left; every transaction is one
batch, so no pass holds locks for long. Passes in several processes (every worker runs one, and
``mediagen scheduler``) share the work: each batch is leased to one pass. A job whose objects
could not all be removed keeps its rows (and its lease, for :data:`HOLD_S`), and a later pass
tries again. Each pass that deleted something logs one line with the counts and bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from mediagen.errors import Unavailable
from mediagen.jobs.expired import ExpiredJob, ExpiredJobs, Removed
from mediagen.jobs.store import utcnow
from mediagen.metrics import definitions as metrics
from mediagen.storage.base import Storage, StorageError
from mediagen.worker.runner import worker_id

log = logging.getLogger(__name__)

#: How long a pass holds a batch: far longer than deleting a batch's objects takes, so only a
#: pass that died (or stalled) lets another one take it over.
HOLD_S = 300.0


class Retention:
    """Deletes jobs that finished more than ``age_s`` ago, ``batch_size`` at a time."""

    def __init__(
        self,
        expired: ExpiredJobs,
        storage: Storage,
        *,
        age_s: float,
        interval_s: float,
        batch_size: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.expired = expired
        self.storage = storage
        self.age_s = age_s
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.owner = f"retention:{worker_id()}"
        self._clock = clock

    async def run_once(self) -> Removed:
        """One pass: every job expired by now, batch by batch; returns what it deleted."""
        finished_before = self._clock() - timedelta(seconds=self.age_s)
        total = Removed()
        try:
            while True:
                batch = await self.expired.take(
                    finished_before=finished_before,
                    owner=self.owner,
                    limit=self.batch_size,
                    hold_s=HOLD_S,
                )
                if batch:
                    total += await self._delete(batch)
                if len(batch) < self.batch_size:
                    return total
        finally:
            # Also when a batch failed: what the earlier ones deleted is gone all the same.
            if total.jobs:
                log.info(
                    "retention removed %d job(s) finished before %s: %d event(s), "
                    "%d media file(s), %d bytes",
                    total.jobs,
                    finished_before.isoformat(timespec="seconds"),
                    total.events,
                    total.media,
                    total.media_bytes,
                )

    async def _delete(self, batch: list[ExpiredJob]) -> Removed:
        """Objects first, then the rows of the jobs whose objects are all gone."""
        keys = [key for job in batch for key in job.keys]
        kept = await self.storage.delete_many(keys) if keys else frozenset()
        if kept:
            metrics.RETENTION_FAILURES.labels("storage").inc()
        removed = await self.expired.remove(
            [job.id for job in batch if kept.isdisjoint(job.keys)], self.owner
        )
        metrics.RETENTION_DELETED.labels("jobs").inc(removed.jobs)
        metrics.RETENTION_DELETED.labels("events").inc(removed.events)
        metrics.RETENTION_DELETED.labels("media").inc(removed.media)
        metrics.RETENTION_DELETED_BYTES.inc(removed.media_bytes)
        return removed

    async def run_forever(self) -> None:
        """A pass now (a process may not live a whole interval), then one every interval."""
        while True:
            try:
                await self.run_once()
            except (Unavailable, StorageError) as exc:
                # The batch in hand keeps its lease and comes back after HOLD_S.
                reason = "database" if isinstance(exc, Unavailable) else "storage"
                metrics.RETENTION_FAILURES.labels(reason).inc()
                log.warning("retention pass stopped: %s", exc)
            except Exception:  # keep deleting whatever one pass hit
                metrics.RETENTION_FAILURES.labels("internal").inc()
                log.exception("retention pass failed")
            await asyncio.sleep(self.interval_s)
