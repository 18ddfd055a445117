"""The gauges that come from the database: active jobs by state, queue depth, the oldest
waiting job's age, and RUNNING jobs nobody renews.

One statement over the non-final rows only (the ``(status, next_attempt_at)`` index finds them;
finished jobs, which grow without bound, are never counted here), run when ``/metrics`` is
scraped but at most once per ``min_interval_s`` however many scrapers there are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import case, func, select, type_coerce

from mediagen.jobs.database import Database
from mediagen.jobs.models import JobRow, UTCDateTime
from mediagen.jobs.states import JobState
from mediagen.metrics import definitions as m

log = logging.getLogger(__name__)

_PENDING = JobState.PENDING.value
_RUNNING = JobState.RUNNING.value


@dataclass(frozen=True)
class QueueSnapshot:
    pending: int
    running: int
    due: int
    oldest_due_at: datetime | None
    lease_expired: int

    def oldest_age_s(self, now: datetime) -> float:
        if self.oldest_due_at is None:
            return 0.0
        return max(0.0, (now - self.oldest_due_at).total_seconds())


async def snapshot(db: Database, now: datetime) -> QueueSnapshot:
    """Counts over the PENDING and RUNNING jobs, in one read."""
    due = (JobRow.status == _PENDING) & (JobRow.next_attempt_at <= now)
    expired = (JobRow.status == _RUNNING) & (JobRow.lease_expires_at < now)
    query = select(
        func.coalesce(func.sum(case((JobRow.status == _PENDING, 1), else_=0)), 0),
        func.coalesce(func.sum(case((JobRow.status == _RUNNING, 1), else_=0)), 0),
        func.coalesce(func.sum(case((due, 1), else_=0)), 0),
        type_coerce(func.min(case((due, JobRow.next_attempt_at))), UTCDateTime()),
        func.coalesce(func.sum(case((expired, 1), else_=0)), 0),
    ).where(JobRow.status.in_((_PENDING, _RUNNING)))
    async with db.reading() as session:
        row = (await session.execute(query)).one()
    return QueueSnapshot(int(row[0]), int(row[1]), int(row[2]), row[3], int(row[4]))


class DatabaseGauges:
    """Refreshes the database gauges on demand, at most every ``min_interval_s``."""

    def __init__(self, db: Database, *, min_interval_s: float, timeout_s: float = 5.0) -> None:
        self.db = db
        self.min_interval_s = min_interval_s
        self.timeout_s = timeout_s
        self._last = -float("inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Update the gauges unless they are fresh; a failure is counted and logged, and the
        scrape goes on with the previous values (a scrape must not fail with the database)."""
        async with self._lock:  # concurrent scrapes share one query
            if time.monotonic() - self._last < self.min_interval_s:
                return
            now = datetime.now(UTC)
            try:
                async with asyncio.timeout(self.timeout_s):
                    found = await snapshot(self.db, now)
            except Exception as exc:  # down, busy or slow: keep serving the other metrics
                m.GAUGE_QUERY_FAILURES.inc()
                log.warning("metrics: database gauges not refreshed: %s", exc)
                return
            self._last = time.monotonic()
            m.JOBS_ACTIVE.labels(state=_PENDING).set(found.pending)
            m.JOBS_ACTIVE.labels(state=_RUNNING).set(found.running)
            m.QUEUE_DEPTH.set(found.due)
            m.QUEUE_OLDEST.set(found.oldest_age_s(now))
            m.JOBS_LEASE_EXPIRED.set(found.lease_expired)
