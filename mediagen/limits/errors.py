"""The errors a tenant over one of its limits gets: RESOURCE_EXHAUSTED (HTTP 429 with
``Retry-After``) carrying ``RetryInfo`` and a ``QuotaFailure`` that names the limit."""

from __future__ import annotations

from google.protobuf.message import Message
from google.rpc import error_details_pb2

from mediagen.errors import ResourceExhausted


class QuotaExceeded(ResourceExhausted):
    """A tenant hit one of its limits; ``limit`` is the configured value."""

    reason = "QUOTA_EXCEEDED"
    what = "a limit"

    def __init__(self, tenant: str, limit: float, *, retry_after_s: float) -> None:
        self.tenant = tenant
        self.limit = limit
        super().__init__(
            f"tenant {tenant!r} is over {self.what} ({limit:g}); retry in {retry_after_s:.3g}s",
            retry_after_s=retry_after_s,
            metadata={"tenant": tenant, "limit": f"{limit:g}"},
        )

    def details(self) -> list[Message]:
        violation = error_details_pb2.QuotaFailure.Violation(
            subject=f"tenant:{self.tenant}", description=f"{self.what}: {self.limit:g}"
        )
        return [*super().details(), error_details_pb2.QuotaFailure(violations=[violation])]


class RateLimited(QuotaExceeded):
    reason = "RATE_LIMITED"
    what = "the submission rate limit (per second)"


class TooManyActiveJobs(QuotaExceeded):
    reason = "TOO_MANY_ACTIVE_JOBS"
    what = "the limit of active (pending or running) jobs"


class TooManyWatchStreams(QuotaExceeded):
    reason = "TOO_MANY_WATCH_STREAMS"
    what = "the limit of open WatchJob streams"
