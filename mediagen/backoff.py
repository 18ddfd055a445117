"""Backoff as a generator: capped exponential delays with full jitter.

Loops that retry take ``delays: Iterator[float]`` and a provider's ``Retry-After`` replaces the
next delay, so tests can pass a fixed list instead of patching time.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


def exponential_delays(
    base_s: float, cap_s: float, *, jitter: bool = True, rng: random.Random | None = None
) -> Iterator[float]:
    """Yield ``U(0, min(cap, base·2^n))`` for n = 0, 1, 2, … (full jitter), or the bound itself."""
    rand = rng or random.Random()
    n = 0
    while True:
        bound = min(cap_s, base_s * 2**n)
        yield rand.uniform(0, bound) if jitter else bound
        n = min(n + 1, 62)  # stop growing the exponent long after the cap is reached


def retry_delay(
    attempt: int,
    base_s: float,
    cap_s: float,
    *,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Delay before attempt ``attempt + 1`` (``attempt`` >= 1): full jitter, honouring Retry-After.

    A provider's Retry-After is a floor: retrying earlier would only be throttled again.
    """
    delays = exponential_delays(base_s, cap_s, rng=rng)
    delay = 0.0
    for _ in range(max(1, attempt)):
        delay = next(delays)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, cap_s * 10))
    return delay
