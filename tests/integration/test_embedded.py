"""Issue 2, end to end over real gRPC: the embedded service with the real worker, store,
storage, gateway and the Replicate emulator reached through the official client."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from mediagen.auth.principal import DEFAULT_TENANT
from mediagen.embedded import Embedded
from mediagen.emulator import Delay, Route
from mediagen.jobs.validation import validate_generate
from mediagen.providers.base import PredictionStatus
from mediagen.v1 import job_pb2, media_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc

Stub = pb_grpc.MediaGenerationServiceStub
TERMINAL = (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELED)


async def watch(stub: Stub, job_id: str, after: int = 0) -> list[job_pb2.JobEvent]:
    call = stub.WatchJob(pb.WatchJobRequest(id=job_id, after_sequence=after), timeout=30)
    return [response.event async for response in call]


async def generate(stub: Stub, prompt: str = "a red fox", **params: Any) -> job_pb2.Job:
    request = pb.GenerateMediaRequest(
        prompt=prompt, parameters=job_pb2.GenerationParameters(**params)
    )
    return (await stub.GenerateMedia(request)).job


async def test_generate_watch_download(stub: Stub) -> None:
    job = await generate(
        stub, width=320, height=192, num_outputs=2, output_format=job_pb2.OUTPUT_FORMAT_JPEG
    )
    assert job.status == job_pb2.JOB_STATE_PENDING and job.attempt == 0

    events = await watch(stub, job.id)
    states = [e.job.status for e in events]
    assert states[0] == job_pb2.JOB_STATE_PENDING
    assert job_pb2.JOB_STATE_RUNNING in states
    assert states[-1] == job_pb2.JOB_STATE_SUCCEEDED
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    progress = [e.job.progress for e in events if e.type == job_pb2.JOB_EVENT_TYPE_PROGRESS]
    assert len(progress) >= 3 and progress == sorted(progress)  # rising, several steps
    assert 0 < progress[0] < progress[-1] < 1

    final = events[-1].job
    assert final.progress == 1.0 and len(final.media) == 2
    async with httpx.AsyncClient() as http:
        for media in final.media:
            body = (await http.get(media.url)).raise_for_status().content
            assert hashlib.sha256(body).hexdigest() == media.sha256
            assert len(body) == media.size_bytes
            image = Image.open(io.BytesIO(body))
            assert image.format == "JPEG" and image.size == (320, 192)
            assert (media.width, media.height, media.mime_type) == (320, 192, "image/jpeg")
            assert media.kind == media_pb2.MEDIA_KIND_IMAGE
            assert (
                await stub.GetMedia(pb.GetMediaRequest(id=media.id))
            ).media.sha256 == media.sha256
    got = (await stub.GetJob(pb.GetJobRequest(id=job.id))).job
    assert got.status == job_pb2.JOB_STATE_SUCCEEDED and got.complete_time.seconds > 0


async def test_watch_replays_after_sequence_and_resumes(stub: Stub) -> None:
    job = await generate(stub, width=64, height=64)
    # Drop the stream after two events, reconnect with the last sequence seen.
    seen: list[job_pb2.JobEvent] = []
    call = stub.WatchJob(pb.WatchJobRequest(id=job.id))
    async for response in call:
        seen.append(response.event)
        if len(seen) == 2:
            call.cancel()
            break
    seen += await watch(stub, job.id, after=seen[-1].sequence)
    assert [e.sequence for e in seen] == list(range(1, len(seen) + 1))
    assert seen[-1].job.status == job_pb2.JOB_STATE_SUCCEEDED

    everything = await watch(stub, job.id)
    assert everything == seen
    n = len(everything) // 2
    assert await watch(stub, job.id, after=n) == everything[n:]
    assert await watch(stub, job.id, after=len(everything)) == []


def bad_request(err: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            return {v.field: v.description for v in request.field_violations}
    raise AssertionError("no BadRequest detail")


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 5000}, "prompt"),
        ({"prompt": "p", "parameters": job_pb2.GenerationParameters(width=0)}, "parameters.width"),
        (
            {"prompt": "p", "parameters": job_pb2.GenerationParameters(width=100_000)},
            "parameters.width",
        ),
        ({"prompt": "p", "model": "nobody/unknown-model"}, "model"),
    ],
)
async def test_bad_generate_requests_store_nothing(
    stub: Stub, request_fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GenerateMedia(pb.GenerateMediaRequest(**request_fields))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_request(err.value)
    assert (await stub.ListJobs(pb.ListJobsRequest())).total_size == 0


async def test_malformed_page_token_and_unknown_ids(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListJobs(pb.ListJobsRequest(page_token="not-a-token"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in bad_request(err.value)
    unknown = str(uuid.uuid4())
    for call in (
        stub.GetJob(pb.GetJobRequest(id=unknown)),
        stub.GetMedia(pb.GetMediaRequest(id=unknown)),
        stub.CancelJob(pb.CancelJobRequest(id=unknown)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await watch(stub, unknown)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_same_request_id_gives_one_job_and_one_prediction(
    stub: Stub, embedded: Embedded
) -> None:
    request = pb.GenerateMediaRequest(
        prompt="idempotent fox",
        request_id=str(uuid.uuid4()),
        parameters=job_pb2.GenerationParameters(width=64, height=64),
    )
    first, second = await asyncio.gather(stub.GenerateMedia(request), stub.GenerateMedia(request))
    assert first.job.id == second.job.id
    assert (await watch(stub, first.job.id))[-1].job.status == job_pb2.JOB_STATE_SUCCEEDED
    again = await stub.GenerateMedia(request)
    assert again.job.id == first.job.id and again.job.status == job_pb2.JOB_STATE_SUCCEEDED
    prompts = [p.input.get("prompt") for p in embedded.emulator.emulator.predictions]
    assert prompts.count("idempotent fox") == 1


async def test_cancel_running_job_cancels_the_prediction(stub: Stub, embedded: Embedded) -> None:
    job = await generate(stub, "cancel me", width=64, height=64)
    call = stub.WatchJob(pb.WatchJobRequest(id=job.id))
    events: list[job_pb2.JobEvent] = []
    async for response in call:
        events.append(response.event)
        if response.event.type == job_pb2.JOB_EVENT_TYPE_PROGRESS:
            cancelled = (await stub.CancelJob(pb.CancelJobRequest(id=job.id))).job
            assert cancelled.cancel_requested
    assert events[-1].job.status == job_pb2.JOB_STATE_CANCELED
    (prediction,) = [
        p for p in embedded.emulator.emulator.predictions if p.input.get("prompt") == "cancel me"
    ]
    assert prediction.status_at(asyncio.get_running_loop().time()) is PredictionStatus.CANCELED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CancelJob(pb.CancelJobRequest(id=(await generate_done(stub)).id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def generate_done(stub: Stub) -> job_pb2.Job:
    job = await generate(stub, "finished", width=64, height=64)
    return (await watch(stub, job.id))[-1].job


async def test_cancel_pending_job_is_immediate(stub: Stub, embedded: Embedded) -> None:
    # Hold creates at the emulator so the job cannot get far, then cancel it while PENDING or
    # RUNNING; either way it must end CANCELED.
    embedded.emulator.emulator.inject(Delay(route=Route.CREATE, delay_s=1.0))
    job = await generate(stub, "cancel early", width=64, height=64)
    cancelled = (await stub.CancelJob(pb.CancelJobRequest(id=job.id))).job
    assert cancelled.status in (job_pb2.JOB_STATE_CANCELED, job_pb2.JOB_STATE_RUNNING)
    assert (await watch(stub, job.id))[-1].job.status == job_pb2.JOB_STATE_CANCELED


async def test_duplicate_delivery_creates_one_prediction(stub: Stub, embedded: Embedded) -> None:
    assert embedded.core is not None and embedded.runner is not None
    job = await generate(stub, "delivered thrice", width=64, height=64)
    # The queue already delivered it once; deliver it twice more, concurrently.
    await asyncio.gather(embedded.core.enqueue(job.id), embedded.core.enqueue(job.id))
    assert (await watch(stub, job.id))[-1].job.status == job_pb2.JOB_STATE_SUCCEEDED
    prompts = [p.input.get("prompt") for p in embedded.emulator.emulator.predictions]
    assert prompts.count("delivered thrice") == 1


async def test_job_cancelled_before_any_prediction_never_starts_one(
    stub: Stub, embedded: Embedded
) -> None:
    # A worker claimed the job, then died before asking for a prediction; meanwhile a caller
    # cancelled it. The next worker must finish the cancellation without paying for anything.
    assert embedded.core is not None
    store = embedded.core.store
    spec = validate_generate(
        pb.GenerateMediaRequest(prompt="cancelled in time"),
        default_model=embedded.settings.default_model,
        allowed_models=embedded.settings.models,
    )
    job, _ = await store.create(spec, tenant=DEFAULT_TENANT)
    assert await store.claim(job.id, "a-worker-that-dies", lease_s=0.2)
    assert (await stub.CancelJob(pb.CancelJobRequest(id=job.id))).job.cancel_requested
    await asyncio.sleep(0.3)  # the dead worker's lease runs out
    await embedded.core.enqueue(job.id)
    events = await watch(stub, job.id)
    assert events[-1].job.status == job_pb2.JOB_STATE_CANCELED
    prompts = [p.input.get("prompt") for p in embedded.emulator.emulator.predictions]
    assert "cancelled in time" not in prompts
