"""Finished jobs past their retention, taken and deleted in short transactions.

Deleting is two steps around the storage calls, so a crash never leaves a row whose files are
gone for good, nor files nobody will delete:

1. :meth:`ExpiredJobs.take` leases a batch of expired jobs to one retention pass: one UPDATE
   sets ``lease_owner`` and ``lease_expires_at`` on finished jobs (their lease columns are free
   once they finish) and returns their media keys. On PostgreSQL the pick is ``FOR UPDATE SKIP
   LOCKED``, so passes in several processes take disjoint batches and never wait on each other;
   SQLite has one writer and its dialect leaves the clause out.
2. The pass deletes the objects from storage, then :meth:`ExpiredJobs.remove` deletes the rows
   (events, media, job) of the jobs it still holds, in one transaction.

A pass that dies between the two leaves its jobs leased; when the lease runs out a later pass
takes them again, deletes the (now missing) objects again, which is harmless, and the rows.
Running and pending jobs are never taken: only the final states are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, func, or_, select, update

from mediagen.jobs.database import Database
from mediagen.jobs.models import JobEventRow, JobRow, MediaRow
from mediagen.jobs.states import TERMINAL
from mediagen.jobs.store import utcnow

_FINAL = sorted(state.value for state in TERMINAL)


@dataclass(frozen=True)
class ExpiredJob:
    """A job leased for deletion, with the storage keys of its media."""

    id: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Removed:
    """What was deleted: jobs, their events and media rows, and the media's recorded bytes."""

    jobs: int = 0
    events: int = 0
    media: int = 0
    media_bytes: int = 0

    def __add__(self, other: Removed) -> Removed:
        return Removed(
            self.jobs + other.jobs,
            self.events + other.events,
            self.media + other.media,
            self.media_bytes + other.media_bytes,
        )


class ExpiredJobs:
    """Finished jobs over a :class:`Database`, for retention (global: every tenant's)."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self._clock = clock

    async def take(
        self, *, finished_before: datetime, owner: str, limit: int, hold_s: float
    ) -> list[ExpiredJob]:
        """Lease to ``owner``, for ``hold_s``, up to ``limit`` jobs that reached a final state
        before ``finished_before`` and that no other pass holds; return them."""
        now = self._clock()
        expired = and_(
            JobRow.status.in_(_FINAL),
            # Redundant (a job ends after it is created), but it lets an index on create_time
            # find the candidates: a pass with nothing to delete reads no finished job.
            JobRow.create_time < finished_before,
            func.coalesce(JobRow.complete_time, JobRow.update_time) < finished_before,
            or_(JobRow.lease_expires_at.is_(None), JobRow.lease_expires_at < now),
        )
        picked = (
            select(JobRow.id).where(expired).limit(limit).with_for_update(skip_locked=True)
        ).cte("picked")
        async with self.db.writing() as session:
            result = await session.execute(
                update(JobRow)
                .where(JobRow.id.in_(select(picked.c.id)))
                .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=hold_s))
                .returning(JobRow.id)
                .execution_options(synchronize_session=False)
            )
            ids = list(result.scalars().all())
            if not ids:
                return []
            media = await session.execute(
                select(MediaRow.job_id, MediaRow.storage_key).where(MediaRow.job_id.in_(ids))
            )
        keys: dict[str, list[str]] = {job_id: [] for job_id in ids}
        for job_id, key in media:
            keys[job_id].append(key)
        return [ExpiredJob(job_id, tuple(job_keys)) for job_id, job_keys in keys.items()]

    async def remove(self, job_ids: Sequence[str], owner: str) -> Removed:
        """Delete the rows of those jobs ``owner`` still holds (a pass slower than its lease
        may have lost some to another pass, which deletes them instead)."""
        if not job_ids:
            return Removed()
        async with self.db.writing() as session:
            held = await session.scalars(
                select(JobRow.id)
                .where(JobRow.id.in_(list(job_ids)), JobRow.lease_owner == owner)
                .with_for_update()
            )
            mine = list(held.all())
            if not mine:
                return Removed()
            events = await session.execute(
                delete(JobEventRow)
                .where(JobEventRow.job_id.in_(mine))
                .execution_options(synchronize_session=False)
            )
            sizes = await session.scalars(
                delete(MediaRow)
                .where(MediaRow.job_id.in_(mine))
                .returning(MediaRow.size_bytes)
                .execution_options(synchronize_session=False)
            )
            media_bytes = list(sizes.all())
            await session.execute(
                delete(JobRow)
                .where(JobRow.id.in_(mine))
                .execution_options(synchronize_session=False)
            )
        return Removed(
            jobs=len(mine),
            events=cast(CursorResult[Any], events).rowcount,
            media=len(media_bytes),
            media_bytes=sum(media_bytes),
        )
