"""Many WatchJob streams on one job in one process: the bus hands every watcher the same event
object, and each must still get the final event with media URLs that work (an event, once
published, is never rewritten in place); and every watcher, however many, gets every event once,
in order."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
from google.protobuf import struct_pb2

from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc

WATCHERS = 50
MANY = 300


def unsigned(event: job_pb2.JobEvent) -> job_pb2.JobEvent:
    """The event with its media URLs' signatures dropped: a signed URL carries its expiry, to
    the second of when it was resolved, so two streams straddling a second differ there."""
    copy = job_pb2.JobEvent()
    copy.CopyFrom(event)
    for item in copy.job.media:
        item.url = item.url.split("?")[0]
    return copy


async def test_fifty_watchers_of_one_job_all_get_working_urls(
    stub: pb_grpc.MediaGenerationServiceStub,
) -> None:
    extra = struct_pb2.Struct()
    extra.update({"emulator_latency_s": 2.0})  # every watcher is live before the job ends
    request = pb.GenerateMediaRequest(
        prompt="a crowd watching",
        parameters=job_pb2.GenerationParameters(
            width=64, height=64, num_outputs=2, extra_input=extra
        ),
    )
    job = (await stub.GenerateMedia(request)).job

    async def watch() -> list[job_pb2.JobEvent]:
        call = stub.WatchJob(pb.WatchJobRequest(id=job.id), timeout=60)
        return [response.event async for response in call]

    streams = await asyncio.gather(*(watch() for _ in range(WATCHERS)))

    finals = [events[-1] for events in streams]
    assert {final.job.status for final in finals} == {job_pb2.JOB_STATE_SUCCEEDED}
    # Every watcher saw the same events, down to the same URLs (signed for its own stream).
    first = [unsigned(event) for event in streams[0]]
    assert all([unsigned(event) for event in events] == first for events in streams)
    media = finals[0].job.media
    assert len(media) == 2
    async with httpx.AsyncClient(timeout=30) as http:
        for item in media:
            assert item.url.startswith("http://"), item.url
            body = (await http.get(item.url)).raise_for_status().content
            assert hashlib.sha256(body).hexdigest() == item.sha256
    got = (await stub.GetJob(pb.GetJobRequest(id=job.id))).job
    assert [m.url.split("?")[0] for m in got.media] == [m.url.split("?")[0] for m in media]
    assert all("?" in m.url for m in media)  # local media are served only through signed URLs


async def test_many_watchers_of_one_job_get_every_event_once_in_order(
    stub: pb_grpc.MediaGenerationServiceStub,
) -> None:
    extra = struct_pb2.Struct()
    extra.update({"emulator_latency_s": 1.5})  # progress events while the streams are open
    request = pb.GenerateMediaRequest(
        prompt="a crowd counting",
        parameters=job_pb2.GenerationParameters(width=64, height=64, extra_input=extra),
    )
    job = (await stub.GenerateMedia(request)).job

    async def watch(after: int, delay_s: float) -> list[job_pb2.JobEvent]:
        await asyncio.sleep(delay_s)
        call = stub.WatchJob(pb.WatchJobRequest(id=job.id, after_sequence=after), timeout=60)
        return [response.event async for response in call]

    # Streams join over the job's run, some resuming after the first event they would get.
    plan = [(n % 3, (n % 10) * 0.1) for n in range(MANY)]
    streams = await asyncio.gather(*(watch(after, delay_s) for after, delay_s in plan))

    replay = [r.event async for r in stub.WatchJob(pb.WatchJobRequest(id=job.id), timeout=60)]
    assert replay[-1].job.status == job_pb2.JOB_STATE_SUCCEEDED
    assert len(replay) > 3  # pending, running, some progress, succeeded
    final = replay[-1].sequence
    assert [e.sequence for e in replay] == list(range(1, final + 1))
    for (after, _), events in zip(plan, streams, strict=True):
        # Every event after the resume point, once each, in order, ending with the last,
        # and the same as the store's own (live ones were built once for all streams).
        assert [e.sequence for e in events] == list(range(after + 1, final + 1))
        assert [unsigned(e) for e in events] == [unsigned(e) for e in replay[after:]]
