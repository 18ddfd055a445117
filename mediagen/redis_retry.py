"""How mediagen's Redis clients retry one command: the part of riding out a Redis restart that
redis-py can do (the callers' own loops ride out the rest)."""

from __future__ import annotations

from redis import exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff


def stale_connection_retry(*, on_timeout: bool = True) -> Retry:
    """Twice, quickly, on a connection or (unless ``on_timeout`` is false) timeout error: a
    pooled connection that a Redis restart left broken is reconnected and the command sent
    again, instead of failing once per stale connection (redis-py's pools retry nothing by
    default). Without ``on_timeout`` a Redis that does not answer fails after one timeout,
    for a caller that must answer within it."""
    errors: tuple[type[exceptions.RedisError], ...] = (exceptions.ConnectionError,)
    if on_timeout:
        errors += (exceptions.TimeoutError,)
    return Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 2, errors)
