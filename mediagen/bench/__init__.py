"""``mediagen bench``: bounded load scenarios against a deployment on loopback.

Each scenario (``submit``, ``e2e``, ``inflight``, ``watch``, ``copy``) drives a deployment it
started itself (embedded or distributed, on private servers) or one already running, and
returns a :class:`~mediagen.bench.report.BenchReport`: rates, latency percentiles, the CPU
seconds and RSS of the processes it can see, and each target of issue 10 met or not.
"""

from mediagen.bench.report import BenchReport, format_text

__all__ = ["BenchReport", "format_text"]
