"""Open WatchJob streams per tenant, counted in this API process. Pure: no I/O.

Each stream holds a slot for its lifetime; a tenant at its maximum is refused a new one. The
count is per process (a tenant may hold the maximum on each API process): streams are cheap to
keep and end by themselves, so an exact cross-process count is not worth a Redis round trip
per stream and a leak on every crash.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from mediagen.limits.errors import TooManyWatchStreams

#: What a refused watcher is told to wait: streams end when their jobs do, unpredictably.
STREAM_RETRY_S = 5.0


class StreamSlots:
    """At most ``max_per_tenant`` open streams per tenant; 0 means no limit."""

    def __init__(self, max_per_tenant: int) -> None:
        self.max_per_tenant = max_per_tenant
        self._open: Counter[str] = Counter()

    def open(self, tenant: str) -> int:
        """Streams ``tenant`` has open now."""
        return self._open[tenant]

    @contextlib.contextmanager
    def hold(self, tenant: str) -> Iterator[None]:
        """A slot for the duration of the block; TooManyWatchStreams if there is none."""
        if self.max_per_tenant and self._open[tenant] >= self.max_per_tenant:
            raise TooManyWatchStreams(tenant, self.max_per_tenant, retry_after_s=STREAM_RETRY_S)
        self._open[tenant] += 1
        try:
            yield
        finally:
            self._open[tenant] -= 1
            if not self._open[tenant]:
                del self._open[tenant]
