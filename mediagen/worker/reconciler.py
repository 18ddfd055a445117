"""The reconciler: re-sends wake-ups for jobs that the queue lost or a dead worker left behind.

Every ``interval_s`` it asks the store for PENDING jobs that are due and RUNNING jobs whose
lease expired, not woken in the last ``resend_after_s``, and enqueues each. The store picks and
marks them in one statement (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: a row a stuck session
holds is skipped, never waited on), so reconcilers in several processes never both send one;
even if they did, the claim lets only one worker run it. With it, losing every queue message
(a Redis restart) delays jobs but loses none: a worker that finds its queue again after an
outage (or its stream recreated) calls :meth:`Reconciler.sweep` at once. Every worker runs one;
``mediagen scheduler`` runs it alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mediagen.errors import Unavailable
from mediagen.jobs.store import JobStore
from mediagen.metrics import definitions as metrics

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        store: JobStore,
        enqueue: Callable[[str], Awaitable[None]],
        *,
        interval_s: float,
        resend_after_s: float,
    ) -> None:
        self.store = store
        self.enqueue = enqueue
        self.interval_s = interval_s
        self.resend_after_s = resend_after_s
        self._queue_down = False

    async def run_once(self, *, resend_after_s: float | None = None) -> int:
        """One pass; returns how many jobs were re-sent."""
        after = self.resend_after_s if resend_after_s is None else resend_after_s
        job_ids = await self.store.take_due(resend_after_s=after)
        sent = 0
        for job_id in job_ids:
            try:
                await self.enqueue(job_id)
                sent += 1
                metrics.RECONCILER_ACTIONS.labels("resent").inc()
            except Exception as exc:  # the queue is down: the rest would fail alike
                metrics.RECONCILER_ACTIONS.labels("enqueue_failed").inc()
                self._queue_failed(exc, len(job_ids) - sent)
                break
        if sent:
            if self._queue_down:
                self._queue_down = False
                log.info("reconciler: queue reachable again")
            log.info("reconciler re-sent %d job(s)", sent)
        return sent

    def _queue_failed(self, exc: Exception, waiting: int) -> None:
        """Warn once per outage, naming the underlying error (taskiq wraps it)."""
        if self._queue_down:
            return
        self._queue_down = True
        log.warning(
            "reconciler: queue unavailable (%s); %d job(s) wait for a later pass",
            exc.__cause__ or exc,
            waiting,
        )

    async def sweep(self) -> int:
        """Wake every due job now, however recently it was woken: the queue may have lost
        every message (it starts empty in-process, or Redis came back empty)."""
        return await self.run_once(resend_after_s=0)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except Unavailable as exc:
                metrics.RECONCILER_ACTIONS.labels("pass_failed").inc()
                log.warning("reconciler: %s", exc)
            except Exception:  # keep reconciling whatever one pass hit
                metrics.RECONCILER_ACTIONS.labels("pass_failed").inc()
                log.exception("reconciler pass failed")
            await asyncio.sleep(self.interval_s)
