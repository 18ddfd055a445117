"""Replicate's per-account rate limits: creates, and every other ``/v1`` call. Pure: no I/O.

Each account (its ``Authorization`` credential) has one bucket per budget of
:class:`~mediagen.providers.rates.Rates`; the emulator's hold ``burst_s`` = 10 s of budget (the
"short bursts above these" Replicate allows; reference/replicate.md §1.6). A call over budget
is answered 429 with how long until a token is back (:func:`mediagen.emulator.problems.throttled`).
"""

from __future__ import annotations

from mediagen.limits.bucket import Level, take
from mediagen.providers.rates import Budget, Rates

#: The emulator's limits unless configured: Replicate's, with bursts of 10 s of budget.
REPLICATE_LIMITS = Rates(burst_s=10.0)


class AccountBuckets:
    """Every account's buckets under one :class:`Rates`."""

    def __init__(self, limits: Rates) -> None:
        self.limits = limits
        self._levels: dict[tuple[str, Budget], Level] = {}

    def spend(self, account: str, budget: Budget, now_s: float) -> float | None:
        """None if the call is within budget (it spends a token), else seconds until it would
        be."""
        bucket = self.limits.bucket(budget)
        if bucket is None:
            return None
        decision = take(bucket, self._levels.get((account, budget)), now_s)
        self._levels[(account, budget)] = decision.level
        return None if decision.allowed else decision.retry_after_s
