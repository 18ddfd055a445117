"""WatchJob responses are built once per event for all the streams of a process: every stream
gets the bytes it would have built itself, media URLs are resolved once, not once per stream,
and only for a moment (a stream that comes later gets freshly signed URLs)."""

from __future__ import annotations

import asyncio

import pytest

from mediagen.api.urls import resolve_event
from mediagen.api.watch_responses import SharedResponses
from mediagen.storage.memory import MemoryStorage
from mediagen.v1 import job_pb2, media_pb2
from mediagen.v1 import media_generation_service_pb2 as pb

STREAMS = 100


class CountingStorage(MemoryStorage):
    """Memory storage whose URLs say how many times one was asked for, and which can be made to
    fail or to take a while (as an S3 presign may)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0
        self.failures = 0
        self.delay_s = 0.0

    async def url_for(self, key: str) -> str:
        self.asked += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failures:
            self.failures -= 1
            raise OSError("storage unreachable")
        return f"{await super().url_for(key)}?signed={self.asked}"


def finished_event(sequence: int = 3) -> job_pb2.JobEvent:
    job = job_pb2.Job(id="job-1", status=job_pb2.JOB_STATE_SUCCEEDED, prompt="a fox")
    job.media.append(media_pb2.Media(id="m1", url="jobs/job-1/0.png", mime_type="image/png"))
    return job_pb2.JobEvent(sequence=sequence, job=job)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_every_stream_gets_the_same_bytes_with_urls_resolved_once() -> None:
    storage = CountingStorage()
    storage.delay_s = 0.01  # all streams ask while the first is still resolving
    responses = SharedResponses(storage)
    event = finished_event()
    original = event.SerializeToString()

    got = await asyncio.gather(*(responses.response(event) for _ in range(STREAMS)))

    assert storage.asked == 1
    # Byte for byte what a stream resolving the event itself would have sent.
    storage.asked = 0
    alone = pb.WatchJobResponse(event=await resolve_event(event, storage))
    assert {response.SerializeToString() for response in got} == {alone.SerializeToString()}
    assert alone.event.job.media[0].url == "memory://media/jobs/job-1/0.png?signed=1"
    assert event.SerializeToString() == original  # the bus's event still holds the storage key


async def test_a_stream_that_comes_later_gets_freshly_signed_urls() -> None:
    storage = CountingStorage()
    clock = Clock()
    responses = SharedResponses(storage, reuse_s=1.0, clock=clock)
    event = finished_event()
    first = await responses.response(event)
    clock.now = 0.5
    assert await responses.response(event) is first
    clock.now = 1.6
    later = await responses.response(event)
    assert later.event.job.media[0].url.endswith("signed=2")


async def test_events_without_media_need_no_storage_and_are_not_mixed_up() -> None:
    storage = CountingStorage()
    responses = SharedResponses(storage)
    running = job_pb2.JobEvent(
        sequence=2, job=job_pb2.Job(id="job-1", status=job_pb2.JOB_STATE_RUNNING)
    )
    other = job_pb2.JobEvent(
        sequence=2, job=job_pb2.Job(id="job-2", status=job_pb2.JOB_STATE_RUNNING)
    )
    assert (await responses.response(running)).event == running
    assert (await responses.response(other)).event == other
    assert storage.asked == 0


async def test_a_failed_resolution_fails_its_streams_and_the_next_one_tries_again() -> None:
    storage = CountingStorage()
    storage.failures = 1
    responses = SharedResponses(storage)
    event = finished_event()
    with pytest.raises(OSError):
        await responses.response(event)
    response = await responses.response(event)
    assert response.event.job.media[0].url.endswith("signed=2")


async def test_a_stream_cancelled_meanwhile_leaves_the_others_their_response() -> None:
    storage = CountingStorage()
    storage.delay_s = 0.05  # the first stream is still resolving while the others ask
    responses = SharedResponses(storage)

    async def three_streams(cancel: int) -> list[asyncio.Task[pb.WatchJobResponse]]:
        streams = []
        for _ in range(3):
            streams.append(asyncio.create_task(responses.response(finished_event(cancel + 1))))
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        streams[cancel].cancel()
        await asyncio.wait(streams, timeout=1.0)
        return streams

    # A waiting stream cancelled: the first one's response still reaches the third.
    first, waiting, third = await three_streams(cancel=1)
    assert waiting.cancelled()
    assert first.result() is third.result()
    assert storage.asked == 1
    # The resolving stream cancelled: the others do not fail, one of them resolves instead.
    resolving, second, third = await three_streams(cancel=0)
    assert resolving.cancelled()
    assert second.result() is third.result()
    assert second.result().event.job.media[0].url.endswith("signed=3")
