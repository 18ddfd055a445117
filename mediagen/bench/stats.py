"""Latency percentiles, rates and windowed counts. Pure: no I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Latency:
    """A latency distribution, in milliseconds (nearest-rank percentiles)."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def to_json(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "p50_ms": round(self.p50_ms, 3),
            "p90_ms": round(self.p90_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
        }


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of an ascending sequence; 0 when empty."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency(seconds: Sequence[float]) -> Latency:
    """Summarise latencies given in seconds."""
    ordered = sorted(seconds)
    return Latency(
        count=len(ordered),
        p50_ms=percentile(ordered, 0.50) * 1e3,
        p90_ms=percentile(ordered, 0.90) * 1e3,
        p99_ms=percentile(ordered, 0.99) * 1e3,
        max_ms=(ordered[-1] * 1e3) if ordered else 0.0,
    )


def rate(count: int, seconds: float) -> float:
    """Events per second; 0 over an empty interval."""
    return count / seconds if seconds > 0 else 0.0


def max_in_window(samples: Sequence[tuple[float, int]], window_s: float) -> int:
    """The largest increase of a cumulative counter within any ``window_s`` span, from
    ``(time, total)`` samples in time order. An increase is credited to the span that holds
    both its samples, so with samples every second the figure is that of a sliding window."""
    best = 0
    start = 0
    for end in range(len(samples)):
        while samples[end][0] - samples[start][0] > window_s:
            start += 1
        best = max(best, samples[end][1] - samples[start][1])
    return best
