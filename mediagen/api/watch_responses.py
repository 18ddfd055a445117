"""WatchJob responses made once per event for every stream of the process, not once per stream.

The bus hands one event to every stream of its job at about the same moment, and each would
copy it, resolve its media URLs (an S3 presign each) and build the same response. Here the
first stream to ask for ``(job id, sequence)`` starts that work and every other stream gets
the same message, which nobody modifies afterwards (gRPC only reads it to serialize it, so the
bytes on the wire are the ones each stream would have built). Events read from the store share
it too: an event's content is fixed once committed.

A response is reused for :data:`REUSE_S` only: a signed media URL carries its expiry, and a
stream that resumes later must get URLs signed then, as before.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from mediagen.api.urls import resolve_event
from mediagen.storage.base import Storage
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb

#: How long a response is handed to further streams (every stream of an event asks within
#: milliseconds; a URL signed this much earlier expires this much sooner, nothing more).
REUSE_S = 1.0
#: Responses kept at most: far more than the events in flight at once, a few MiB at worst.
SIZE = 1024

_Key = tuple[str, int]


class SharedResponses:
    """The response for each event, made once (per :data:`REUSE_S`) for all streams."""

    def __init__(
        self,
        storage: Storage,
        *,
        reuse_s: float = REUSE_S,
        size: int = SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._reuse_s = reuse_s
        self._size = size
        self._clock = clock
        self._made: OrderedDict[_Key, tuple[float, asyncio.Future[pb.WatchJobResponse | None]]] = (
            OrderedDict()
        )

    async def response(self, event: job_pb2.JobEvent) -> pb.WatchJobResponse:
        """The response carrying ``event`` (media URLs resolved). Do not modify it."""
        key = (event.job.id, event.sequence)
        while True:
            now = self._clock()
            entry = self._made.get(key)
            if entry is None or now - entry[0] > self._reuse_s:
                return await self._make(key, now, event)
            made = entry[1]
            # Shielded: a stream cancelled while it waits must not cancel the shared future.
            response = made.result() if made.done() else await asyncio.shield(made)
            if response is not None:
                return response
            # Its maker failed or was cancelled; the entry is gone: make it ourselves.

    async def _make(self, key: _Key, now: float, event: job_pb2.JobEvent) -> pb.WatchJobResponse:
        """Build it here, in the asking stream (no task: with local storage nothing in it
        waits, so it is done before any other stream asks); streams that ask meanwhile wait
        for it, and make their own if this one fails."""
        made: asyncio.Future[pb.WatchJobResponse | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._made[key] = (now, made)
        self._made.move_to_end(key)
        if len(self._made) > self._size:
            self._made.popitem(last=False)
        try:
            response = await self._build(event)
        except BaseException:
            if self._made.get(key, (0.0, None))[1] is made:
                del self._made[key]
            made.set_result(None)
            raise
        made.set_result(response)
        return response

    async def _build(self, event: job_pb2.JobEvent) -> pb.WatchJobResponse:
        if not any(item.url for item in event.job.media):
            # Nothing to resolve (most events). The constructor copies the event, so the bus's
            # shared one stays as it is.
            return pb.WatchJobResponse(event=event)
        return pb.WatchJobResponse(event=await resolve_event(event, self._storage))
