"""Issue 8, end to end: creates that lose their answer, through the embedded service over real
gRPC, its worker and the bundled emulator. Every job must end SUCCEEDED with exactly one
prediction created for it, counted at the emulator's list endpoint by each job's marker."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from mediagen.embedded import Embedded
from mediagen.emulator import Delay, Drop, Route, ServerError
from mediagen.emulator.faults import RequestFault
from mediagen.jobs.models import JobRow
from mediagen.providers.marker import Marker
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.embedded import embedded_settings
from tests.fixtures.emulator import predictions_by_marker

Stub = pb_grpc.MediaGenerationServiceStub
#: A provider call's deadline here: 0.5 s to read plus (at most) 0.5 s to connect.
READ_TIMEOUT_S = 0.5


def lost_answer(kind: str, match: str | None = None) -> RequestFault:
    """A fault that lets the create happen and loses its answer (once)."""
    if kind == "502":
        return ServerError(route=Route.CREATE, status=502, after=True, match=match)
    if kind == "drop":
        return Drop(route=Route.CREATE, after=True, match=match)
    # "slow": made at once, answered past the deadline; "late": made past the deadline.
    return Delay(route=Route.CREATE, delay_s=3 * READ_TIMEOUT_S, after=kind == "slow", match=match)


KINDS = ("502", "drop", "slow")


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Embedded]:
    app = Embedded(
        embedded_settings(
            tmp_path / "data",
            provider_read_timeout_s=READ_TIMEOUT_S,
            ambiguous_settle_s=8 * READ_TIMEOUT_S,  # well past the 1.5 s a "late" create takes
            max_attempts=6,
        )
    )
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def stub(service: Embedded) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        yield pb_grpc.MediaGenerationServiceStub(channel)


async def generate(stub: Stub, prompt: str) -> str:
    params = job_pb2.GenerationParameters(width=64, height=64, seed=7)
    response = await stub.GenerateMedia(pb.GenerateMediaRequest(prompt=prompt, parameters=params))
    return response.job.id


async def final(stub: Stub, job_id: str) -> job_pb2.Job:
    call = stub.WatchJob(pb.WatchJobRequest(id=job_id), timeout=60)
    return [r.event async for r in call][-1].job


async def creates_by_job(service: Embedded) -> Counter[str]:
    """Predictions at the emulator per job marker, read through its list endpoint."""
    return await predictions_by_marker(
        service.emulator.base_url, service.settings.replicate_api_token
    )


async def predictions_of(service: Embedded) -> dict[str, str | None]:
    assert service.core is not None
    async with service.core.db.reading() as session:
        rows = await session.execute(select(JobRow.id, JobRow.prediction_id))
        return {job: prediction for job, prediction in rows}


@pytest.mark.parametrize(
    "kind",
    [*KINDS, "late"],
    ids=["502-after-create", "drop-after-create", "answer-past-deadline", "create-past-deadline"],
)
async def test_a_create_that_lost_its_answer_is_recovered_not_repeated(
    service: Embedded, stub: Stub, kind: str
) -> None:
    service.emulator.emulator.inject(lost_answer(kind))
    job_id = await generate(stub, "a fox in the snow")

    job = await final(stub, job_id)

    assert job.status == job_pb2.JOB_STATE_SUCCEEDED and len(job.media) == 1
    assert job.attempt >= 2  # the first attempt lost its answer
    assert await creates_by_job(service) == {job_id: 1}
    (made,) = service.emulator.emulator.predictions
    assert (await predictions_of(service))[job_id] == made.id


async def test_twenty_pairs_of_identical_jobs_each_get_their_own_prediction(
    service: Embedded, stub: Stub
) -> None:
    prompts = [f"[pair-{n:02d}] a red fox" for n in range(20)]
    for n, prompt in enumerate(prompts):  # each pair's first create loses its answer
        service.emulator.emulator.inject(lost_answer(KINDS[n % 3], match=prompt))
    pairs = await asyncio.gather(
        *(asyncio.gather(generate(stub, p), generate(stub, p)) for p in prompts)
    )
    job_ids = [job_id for pair in pairs for job_id in pair]

    jobs = await asyncio.gather(*(final(stub, job_id) for job_id in job_ids))

    assert [j.status for j in jobs] == [job_pb2.JOB_STATE_SUCCEEDED] * 40
    assert sum(j.attempt >= 2 for j in jobs) >= 20  # one job of each pair lost its answer
    assert service.emulator.emulator.faults.pending() == []  # and every fault fired
    assert await creates_by_job(service) == dict.fromkeys(job_ids, 1)  # none created twice
    stored = await predictions_of(service)
    owned = [stored[job_id] for job_id in job_ids]
    assert None not in owned and len(set(owned)) == 40  # no two jobs share one
    made = {p.id: Marker.from_webhook_url(p.webhook) for p in service.emulator.emulator.predictions}
    holders = {j: made[p] for j, p in stored.items() if p is not None}
    assert all(marker is not None and marker.job_id == j for j, marker in holders.items())


async def test_a_failing_list_endpoint_makes_the_job_retry_not_fail(
    service: Embedded, stub: Stub
) -> None:
    service.emulator.emulator.inject(
        lost_answer("drop"), ServerError(route=Route.LIST, status=500, times=2)
    )
    job_id = await generate(stub, "a fox that waits")

    job = await final(stub, job_id)

    assert job.status == job_pb2.JOB_STATE_SUCCEEDED
    assert job.attempt >= 4  # lost create, two failed lookups, then the recovery
    assert await creates_by_job(service) == {job_id: 1}
