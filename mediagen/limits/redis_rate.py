"""Token buckets in Redis, shared by every API process: one atomic Lua script per take.

Each bucket is a hash ``<prefix><key>`` with ``tokens`` and ``at``; the script refills, takes and
writes back in one step, so concurrent takes from any number of processes never both spend the
last token. Time is Redis's own (``TIME``), one clock for every process, so API hosts' clocks
need not agree. A key expires once its bucket would be full again: idle tenants cost nothing.

Redis unreachable (refused, timed out, failing): :class:`mediagen.errors.Unavailable`. The limit
cannot be checked, and a submission spends money, so it is refused rather than waved through.
A connection a Redis restart left stale is reconnected and the take sent again first
(:mod:`mediagen.redis_retry`); a timeout is not retried, so a hung Redis costs one timeout.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from mediagen.errors import Unavailable
from mediagen.limits.bucket import Bucket, Decision, Level
from mediagen.redis_retry import stale_connection_retry

log = logging.getLogger(__name__)

#: :func:`mediagen.limits.bucket.take` in Lua. ARGV: rate, burst, cost, ttl_ms[, now_s].
#: Numbers go back as strings: Redis would truncate Lua floats to integers.
TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[5] then
  now = tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
end
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {allowed, string.format('%.17g', tokens), string.format('%.17g', retry),
  string.format('%.17g', now)}
"""

#: How long one call to Redis may take before the limit counts as unreachable.
REDIS_TIMEOUT_S = 1.0
#: What the caller is told to wait when Redis is unreachable.
UNAVAILABLE_RETRY_S = 1.0


class RedisRateLimiter:
    """Buckets in Redis under ``prefix``. ``clock`` (seconds) replaces Redis's ``TIME``; only
    tests pass one, to replay exact timelines."""

    def __init__(
        self,
        url: str,
        bucket: Bucket,
        *,
        prefix: str = "mediagen:ratelimit:",
        clock: Callable[[], float] | None = None,
        timeout_s: float = REDIS_TIMEOUT_S,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._clock = clock
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=stale_connection_retry(on_timeout=False),
        )
        self._script = self._redis.register_script(TAKE_SCRIPT)
        # Once a bucket would be full again its key means nothing; a second's margin.
        self._ttl_ms = math.ceil(bucket.refill_s * 1000) + 1000

    def key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    async def take(self, key: str) -> Decision:
        args: list[float | int] = [self.bucket.rate_per_s, self.bucket.burst, 1, self._ttl_ms]
        if self._clock is not None:
            args.append(self._clock())
        try:
            allowed, tokens, retry_s, now_s = await self._script(keys=[self.key(key)], args=args)
        except (RedisError, OSError) as exc:
            log.warning("rate limit %s not checked (Redis unreachable): %s", self.key(key), exc)
            raise Unavailable(
                "the rate limit cannot be checked (Redis unreachable); try again shortly",
                retry_after_s=UNAVAILABLE_RETRY_S,
            ) from exc
        return Decision(bool(allowed), Level(float(tokens), float(now_s)), float(retry_s))

    async def close(self) -> None:
        await self._redis.aclose()
