"""A provider account's per-minute request budgets, and what they allow. Pure: no I/O.

Replicate counts per account: 600 creates and 3,000 other requests (get, cancel, list, ...) a
minute, with short bursts above them allowed (reference/replicate.md §1.6). Each budget is a
token bucket (:mod:`mediagen.limits.bucket`) refilling at the per-minute rate and holding
``burst_s`` seconds of it. The workers' buckets hold one second, well inside what the provider
tolerates, so the jitter between taking a token and the request arriving stays unpunished.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from mediagen.config import Settings
from mediagen.limits.bucket import Bucket

#: Share of the "other requests" budget polling may plan on; the rest is for cancels, lookups
#: and the client's own retries.
POLL_SHARE = 0.9
#: A slow provider answer (seconds), for sizing the connection pool.
SLOW_ANSWER_S = 2.0


class Budget(enum.StrEnum):
    """Which per-minute budget a call spends."""

    CREATE = "create"
    OTHER = "other"  # every call but a create


@dataclass(frozen=True)
class Rates:
    """Per-minute budgets of one account; 0 turns one off."""

    creates_per_min: float = 600.0
    requests_per_min: float = 3000.0
    burst_s: float = 1.0  # seconds of budget usable at once
    #: False: a bucket refilling at the per-minute rate, bursts above it let through (how the
    #: emulator models Replicate). True (the workers' budget): it refills at the budget less its
    #: burst, so that no 60 s counted at the provider, a full burst and a minute of refill,
    #: holds more than the per-minute budget.
    strict_minute: bool = False

    def __post_init__(self) -> None:
        if self.creates_per_min < 0 or self.requests_per_min < 0 or self.burst_s <= 0:
            raise ValueError("rates must not be negative, and burst_s must be positive")

    def per_min(self, budget: Budget) -> float:
        return self.creates_per_min if budget is Budget.CREATE else self.requests_per_min

    def bucket(self, budget: Budget) -> Bucket | None:
        """The budget's bucket; None when it is off."""
        per_min = self.per_min(budget)
        if per_min == 0:
            return None
        burst = max(1, math.floor(per_min / 60 * self.burst_s))
        # A budget smaller than its burst cannot be kept within the minute; it refills as is.
        refill_per_min = per_min - burst if self.strict_minute and per_min > burst else per_min
        return Bucket(refill_per_min / 60, burst)


def provider_rates(settings: Settings) -> Rates:
    """The workers' budgets (MEDIAGEN_PROVIDER_CREATES_PER_MIN, ..._REQUESTS_PER_MIN)."""
    return Rates(
        settings.provider_creates_per_min, settings.provider_requests_per_min, strict_minute=True
    )


def poll_spacing_s(in_flight: int, rates: Rates) -> float:
    """The shortest interval between two polls of one prediction that keeps ``in_flight`` of
    them within the polling share of the budget: N predictions and B requests a minute allow
    one poll each every N/B minutes. 0 when the budget is off."""
    per_min = rates.requests_per_min * POLL_SHARE
    if per_min == 0 or in_flight <= 0:
        return 0.0
    return in_flight * 60.0 / per_min


def pool_size(concurrency: int, rates: Rates) -> int:
    """Connections to the provider's API for one process: never more than jobs in flight (each
    has at most one call outstanding), nor more than the budget can keep busy (its rate over a
    slow answer, plus the bursts)."""
    per_s = (rates.creates_per_min + rates.requests_per_min) / 60
    if per_s == 0:
        return max(1, concurrency)
    bursts = sum(bucket.burst for b in Budget if (bucket := rates.bucket(b)) is not None)
    return max(1, min(concurrency, math.ceil(per_s * SLOW_ANSWER_S) + bursts))
