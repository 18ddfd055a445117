"""What the servicer asks before it admits work: the tenant's rate, active jobs and streams.

Order on a submission: the rate limit first (one cheap atomic step, and it shields the database
from a flood), then the active-job count (one indexed query). A refused submission has spent
its token: the rate limits attempts, not successes. A repeated ``request_id`` is answered
before either check (the servicer looks it up first), so idempotent retries are never refused.

The active-job check counts, then the job is inserted: concurrent submissions of one tenant may
pass together and overshoot the maximum by as many as are in flight at that moment; the rate
limit bounds how many that can be.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mediagen.limits.errors import RateLimited, TooManyActiveJobs
from mediagen.limits.rate import RateLimiter
from mediagen.limits.streams import StreamSlots

#: Bounds of the wait suggested to a tenant at its active-job maximum.
ACTIVE_RETRY_MIN_S = 1.0
ACTIVE_RETRY_MAX_S = 60.0
#: Suggested when none of its jobs has an estimate.
ACTIVE_RETRY_DEFAULT_S = 5.0


@dataclass(frozen=True)
class ActiveJobs:
    """A tenant's PENDING and RUNNING jobs: how many, and the earliest estimated end."""

    count: int
    next_done_at: datetime | None


def active_retry_s(next_done_at: datetime | None, now: datetime) -> float:
    """How long to wait for a slot: until the first active job should be done, bounded."""
    if next_done_at is None:
        return ACTIVE_RETRY_DEFAULT_S
    wait_s = (next_done_at - now).total_seconds()
    return min(ACTIVE_RETRY_MAX_S, max(ACTIVE_RETRY_MIN_S, wait_s))


class Quotas:
    """The per-tenant limits of one API process. ``rate`` None, or a maximum of 0: no limit."""

    def __init__(
        self,
        *,
        rate: RateLimiter | None = None,
        max_active_jobs: int = 0,
        max_watch_streams: int = 0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rate = rate
        self._clock = clock
        self.max_active_jobs = max_active_jobs
        self.streams = StreamSlots(max_watch_streams)

    @property
    def limits_submissions(self) -> bool:
        """Whether :meth:`admit_submission` can refuse anything."""
        return self.rate is not None or bool(self.max_active_jobs)

    async def admit_submission(
        self,
        tenant: str,
        active_jobs: Callable[[str], Awaitable[ActiveJobs]],
    ) -> None:
        """Raise RateLimited or TooManyActiveJobs (or Unavailable, when the shared rate limit
        cannot be reached) unless ``tenant`` may submit a job now."""
        if self.rate is not None:
            decision = await self.rate.take(tenant)
            if not decision.allowed:
                raise RateLimited(
                    tenant, self.rate.bucket.rate_per_s, retry_after_s=decision.retry_after_s
                )
        if self.max_active_jobs:
            active = await active_jobs(tenant)
            if active.count >= self.max_active_jobs:
                raise TooManyActiveJobs(
                    tenant,
                    self.max_active_jobs,
                    retry_after_s=active_retry_s(active.next_done_at, self._clock()),
                )

    def watching(self, tenant: str) -> contextlib.AbstractContextManager[None]:
        """A WatchJob slot for the stream's lifetime (TooManyWatchStreams if none is free)."""
        return self.streams.hold(tenant)

    async def close(self) -> None:
        if self.rate is not None:
            await self.rate.close()
