"""Token-bucket arithmetic. Pure: no I/O, no clock; the caller says what time it is.

A bucket holds up to ``burst`` tokens and refills at ``rate_per_s``; a submission takes one.
Its whole state is the token count at one moment, so any store (a dict, a Redis hash) can keep
it. :data:`mediagen.limits.redis_rate.TAKE_SCRIPT` is the same arithmetic in Lua.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    """The limit: ``burst`` calls at once, ``rate_per_s`` calls per second sustained."""

    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {self.rate_per_s}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {self.burst}")

    @property
    def refill_s(self) -> float:
        """Time an empty bucket takes to fill; an untouched bucket is full after this."""
        return self.burst / self.rate_per_s


@dataclass(frozen=True)
class Level:
    """Tokens in a bucket at a moment (seconds on the caller's clock)."""

    tokens: float
    at_s: float


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: The bucket after the decision (to store for the next one).
    level: Level
    #: When refused: seconds until enough tokens are back; 0 when allowed.
    retry_after_s: float


def level_at(bucket: Bucket, level: Level | None, now_s: float) -> float:
    """Tokens at ``now_s``: a missing level is a full bucket; a clock that went back refills
    nothing (never more than ``burst``)."""
    if level is None:
        return float(bucket.burst)
    elapsed_s = max(0.0, now_s - level.at_s)
    return min(float(bucket.burst), level.tokens + elapsed_s * bucket.rate_per_s)


def take(bucket: Bucket, level: Level | None, now_s: float, cost: int = 1) -> Decision:
    """Take ``cost`` tokens at ``now_s`` if there are that many."""
    tokens = level_at(bucket, level, now_s)
    if tokens >= cost:
        return Decision(True, Level(tokens - cost, now_s), 0.0)
    return Decision(False, Level(tokens, now_s), (cost - tokens) / bucket.rate_per_s)
