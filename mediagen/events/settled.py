"""Settled notices: "job X's prediction P has ended", from the webhook receiver to the worker
running the job, in whatever process it is.

They travel on an event bus of their own (in-process, or Redis pub/sub on channels of their
own), so WatchJob streams never see them; the message is a ``JobEvent`` envelope that carries
only the job id, the marker's attempt and, in ``labels``, the prediction. Like every bus
message a notice may be lost or repeated: the worker only reads the prediction sooner, and its
fallback poll covers a lost one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from mediagen.events.bus import EventBus, Subscription
from mediagen.v1 import job_pb2

_PREDICTION = "prediction_id"
_STATUS = "prediction_status"


@dataclass(frozen=True)
class Settled:
    job_id: str
    attempt: int  # the attempt in the prediction's marker (the one that created it)
    prediction_id: str
    status: str


class NoticeStream:
    """One job's notices, as they arrive."""

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription

    async def get(self) -> Settled:
        while True:
            event = await self._subscription.get()
            if event is not None and (notice := _decode(event)) is not None:
                return notice


class SettledNotices:
    """Publish and receive settled notices over ``bus`` (one used for nothing else)."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    async def publish(self, notice: Settled) -> None:
        """Never raises for a delivery problem (the bus's rule)."""
        await self.bus.publish(_encode(notice))

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[NoticeStream]:
        return self._subscribe(job_id)

    @asynccontextmanager
    async def _subscribe(self, job_id: str) -> AsyncIterator[NoticeStream]:
        async with self.bus.subscribe(job_id) as subscription:
            yield NoticeStream(subscription)


def _encode(notice: Settled) -> job_pb2.JobEvent:
    job = job_pb2.Job(
        id=notice.job_id,
        attempt=notice.attempt,
        labels={_PREDICTION: notice.prediction_id, _STATUS: notice.status},
    )
    return job_pb2.JobEvent(job=job)


def _decode(event: job_pb2.JobEvent) -> Settled | None:
    labels = event.job.labels
    if _PREDICTION not in labels:
        return None
    return Settled(event.job.id, event.job.attempt, labels[_PREDICTION], labels.get(_STATUS, ""))
