"""How mediagen's Redis clients retry one command: the part of riding out a Redis restart that
redis-py can do (the callers' own loops ride out the rest)."""

from __future__ import annotations

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff


def stale_connection_retry() -> Retry:
    """Twice, quickly, on a connection or timeout error: a pooled connection that a Redis
    restart left broken is reconnected and the command sent again, instead of failing once per
    stale connection (redis-py's pools retry nothing by default)."""
    return Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 2)
