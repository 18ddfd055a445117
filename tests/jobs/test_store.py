"""JobStore against real SQLite and PostgreSQL: every test runs on both."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.rpc import code_pb2, status_pb2
from sqlalchemy import select

from mediagen.errors import JobAlreadyFinished, JobNotFound
from mediagen.jobs.database import Database
from mediagen.jobs.listing import JobFilter
from mediagen.jobs.states import JobState
from mediagen.jobs.store import MAX_ERROR_BYTES, ErrorTooLarge, JobStore, LeaseLost, NewMedia
from mediagen.jobs.validation import JobSpec, validate_generate
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb

MODEL = "stability-ai/sdxl"
#: The tenant of the single-tenant tests; isolation between tenants is tested below.
TENANT = "acme"


def spec(prompt: str = "a red fox", request_id: str | None = None) -> JobSpec:
    return validate_generate(
        pb.GenerateMediaRequest(prompt=prompt, request_id=request_id or ""),
        default_model=MODEL,
        allowed_models=(MODEL,),
    )


@pytest.fixture
def store(database: Database) -> JobStore:
    return JobStore(database, estimate_default_s=30)


async def test_create_get_and_first_event(store: JobStore) -> None:
    job, event = await store.create(spec(), tenant=TENANT)
    assert job.status == job_pb2.JOB_STATE_PENDING
    assert event is not None and event.sequence == 1
    assert event.type == job_pb2.JOB_EVENT_TYPE_STATE_CHANGED
    assert await store.get(job.id, tenant=TENANT) == job
    assert await store.events_after(job.id, 0, tenant=TENANT) == [event]
    assert job.status_url == f"/api/v1/jobs/status/{job.id}"
    assert job.estimated_completion_time.seconds - job.create_time.seconds == 30
    with pytest.raises(JobNotFound):
        await store.get(str(uuid.uuid4()), tenant=None)


async def test_a_new_job_reads_back_as_it_was_answered(store: JobStore) -> None:
    """What create answers (built without reading the row back) is what every later read
    says, parameters, labels and times included."""
    request = pb.GenerateMediaRequest(prompt="a fox", labels={"team": "art", "run": "7"})
    request.parameters.width = 768
    request.parameters.guidance_scale = 0.1
    request.parameters.seed = 2**32 - 1
    request.parameters.negative_prompt = "blur"
    request.parameters.output_format = job_pb2.OUTPUT_FORMAT_WEBP
    request.parameters.extra_input.update({"lora_scale": 0.35, "tags": ["a", "b"]})
    created = validate_generate(request, default_model=MODEL, allowed_models=(MODEL,))
    job, event = await store.create(created, tenant=TENANT, submit_request_id="r-1")
    assert event is not None and event.job == job
    assert job.parameters == request.parameters and dict(job.labels) == dict(request.labels)
    assert await store.get(job.id, tenant=TENANT) == job
    assert await store.events_after(job.id, 0, tenant=TENANT) == [event]


async def test_request_id_returns_the_first_job(store: JobStore) -> None:
    rid = str(uuid.uuid4())
    first, event = await store.create(spec(request_id=rid), tenant=TENANT)
    again, none = await store.create(spec(prompt="different", request_id=rid), tenant=TENANT)
    assert event is not None and none is None
    assert again.id == first.id
    assert (await store.list_jobs(tenant=TENANT, limit=10)).total_size == 1


async def test_concurrent_duplicate_requests_make_one_job(store: JobStore) -> None:
    rid = str(uuid.uuid4())
    results = await asyncio.gather(
        *(store.create(spec(request_id=rid), tenant=TENANT) for _ in range(8))
    )
    assert len({job.id for job, _ in results}) == 1
    assert sum(event is not None for _, event in results) == 1


async def test_one_claim_wins(store: JobStore) -> None:
    job, _ = await store.create(spec(), tenant=TENANT)
    claims = await asyncio.gather(*(store.claim(job.id, f"w{i}", 30) for i in range(6)))
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1
    claimed, event = winners[0]
    assert claimed.attempt == 1 and event.job.status == job_pb2.JOB_STATE_RUNNING
    assert await store.claim(job.id, "late", 30) is None


async def test_expired_lease_is_reclaimed_and_the_old_owner_is_locked_out(store: JobStore) -> None:
    job, _ = await store.create(spec(), tenant=TENANT)
    first = await store.claim(job.id, "dead", 0.01)
    assert first is not None
    await store.set_prediction(job.id, "dead", "pred-1")
    await asyncio.sleep(0.05)
    second = await store.claim(job.id, "alive", 30)
    assert second is not None
    claimed, _ = second
    assert claimed.attempt == 2 and claimed.prediction_id == "pred-1"  # resumed, not re-created
    with pytest.raises(LeaseLost):
        await store.renew(job.id, "dead", 30)
    with pytest.raises(LeaseLost):
        await store.succeed(job.id, "dead", [])


async def test_events_are_gap_free_and_replayable(store: JobStore) -> None:
    job, _ = await store.create(spec(), tenant=TENANT)
    assert await store.claim(job.id, "w", 30)
    for value in (0.2, 0.1, 0.5):  # 0.1 is not a rise: no event
        await store.progress(job.id, "w", value)
    media = NewMedia(0, "image", "image/png", f"{job.id}/0.png", 64, 64, 123, "ab" * 32)
    done = await store.succeed(job.id, "w", [media])
    events = await store.events_after(job.id, 0, tenant=TENANT)
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
    assert [e.job.status for e in events] == [
        job_pb2.JOB_STATE_PENDING,
        job_pb2.JOB_STATE_RUNNING,
        job_pb2.JOB_STATE_RUNNING,
        job_pb2.JOB_STATE_RUNNING,
        job_pb2.JOB_STATE_SUCCEEDED,
    ]
    assert [e.job.progress for e in events][2:] == [0.2, 0.5, 1.0]
    assert done == events[-1] and done.job.media[0].sha256 == "ab" * 32
    assert [e.sequence for e in await store.events_after(job.id, 3, tenant=TENANT)] == [4, 5]
    final = await store.get(job.id, tenant=TENANT)
    assert final.status == job_pb2.JOB_STATE_SUCCEEDED and final.complete_time.seconds > 0
    assert not final.HasField("estimated_completion_time")


async def test_retry_waits_and_keeps_the_prediction(store: JobStore) -> None:
    job, _ = await store.create(spec(), tenant=TENANT)
    assert await store.claim(job.id, "w", 30)
    await store.set_prediction(job.id, "w", "pred-9")
    error = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="503 from provider")
    event = await store.retry(job.id, "w", error, 60, keep_prediction=True)
    assert event.job.status == job_pb2.JOB_STATE_PENDING
    assert event.job.error.message == "503 from provider"
    assert await store.claim(job.id, "w2", 30) is None  # not due for a minute
    assert await store.take_due(resend_after_s=0) == []


async def test_cancel_pending_running_and_finished(store: JobStore) -> None:
    pending, _ = await store.create(spec(), tenant=TENANT)
    job, event = await store.cancel(pending.id, tenant=TENANT)
    assert job.status == job_pb2.JOB_STATE_CANCELED and event is not None
    assert (await store.cancel(pending.id, tenant=TENANT))[1] is None  # idempotent

    running, _ = await store.create(spec(), tenant=TENANT)
    assert await store.claim(running.id, "w", 30)
    job, event = await store.cancel(running.id, tenant=TENANT)
    assert job.status == job_pb2.JOB_STATE_RUNNING and job.cancel_requested
    assert event is not None and event.type == job_pb2.JOB_EVENT_TYPE_CANCEL_REQUESTED
    assert await store.renew(running.id, "w", 30) is True
    done = await store.finish_cancel(running.id, "w")
    assert done.job.status == job_pb2.JOB_STATE_CANCELED

    failed, _ = await store.create(spec(), tenant=TENANT)
    assert await store.claim(failed.id, "w", 30)
    await store.fail(failed.id, "w", status_pb2.Status(code=code_pb2.ABORTED, message="boom"))
    with pytest.raises(JobAlreadyFinished):
        await store.cancel(failed.id, tenant=TENANT)


async def test_take_due_hands_each_job_to_one_reconciler(store: JobStore) -> None:
    ids = {(await store.create(spec(f"job {i}"), tenant=TENANT))[0].id for i in range(5)}
    await asyncio.sleep(0.6)  # creation counts as a wake-up sent
    batches = await asyncio.gather(*(store.take_due(resend_after_s=0.5) for _ in range(3)))
    taken = [job_id for batch in batches for job_id in batch]
    assert sorted(taken) == sorted(ids)
    assert await store.take_due(resend_after_s=60) == []


async def test_list_pages_newest_first_with_filter(store: JobStore) -> None:
    ids = [(await store.create(spec(f"job {i}"), tenant=TENANT))[0].id for i in range(7)]
    assert await store.claim(ids[0], "w", 30)
    page = await store.list_jobs(tenant=TENANT, limit=3)
    assert page.total_size == 7 and [j.id for j in page.jobs] == ids[::-1][:3]
    assert page.next_cursor is not None
    rest = await store.list_jobs(tenant=TENANT, limit=10, cursor=page.next_cursor)
    assert [j.id for j in rest.jobs] == ids[::-1][3:] and rest.next_cursor is None
    running = await store.list_jobs(
        tenant=TENANT, where=JobFilter(status=JobState.RUNNING), limit=10
    )
    assert [j.id for j in running.jobs] == [ids[0]] and running.total_size == 1
    offset = await store.list_jobs(tenant=TENANT, limit=2, offset=2)
    assert [j.id for j in offset.jobs] == ids[::-1][2:4]


async def test_an_unbounded_error_is_refused_and_the_job_keeps_its_lease(store: JobStore) -> None:
    job, _ = await store.create(spec(), tenant=TENANT)
    assert await store.claim(job.id, "w", 30)
    huge = status_pb2.Status(code=code_pb2.ABORTED, message="E" * (MAX_ERROR_BYTES + 1))
    with pytest.raises(ErrorTooLarge):
        await store.fail(job.id, "w", huge)
    with pytest.raises(ErrorTooLarge):
        await store.retry(job.id, "w", huge, 1.0, keep_prediction=True)
    assert (await store.get(job.id, tenant=TENANT)).status == job_pb2.JOB_STATE_RUNNING
    await store.fail(job.id, "w", status_pb2.Status(code=code_pb2.ABORTED, message="bounded"))
    assert (await store.get(job.id, tenant=TENANT)).error.message == "bounded"


async def test_a_lease_starts_when_the_claim_gets_a_connection(database_url: str) -> None:
    """A claim that waited for the pool still gets its whole lease: another claim right after it
    finds the job taken (a lease counted from before the wait would already have run out)."""
    db = Database(database_url, pool_size=1, max_overflow=0)
    store = JobStore(db)
    try:
        job, _ = await store.create(spec(), tenant=TENANT)

        async def hold_the_only_connection() -> None:
            async with db.writing() as session:
                await session.execute(select(1))
                await asyncio.sleep(1.5)

        holder = asyncio.create_task(hold_the_only_connection())
        await asyncio.sleep(0.1)
        assert await store.claim(job.id, "waited", 1.0) is not None
        await holder
        assert await store.claim(job.id, "second", 1.0) is None
    finally:
        await db.dispose()


async def test_a_models_run_time_becomes_its_next_jobs_estimate(database: Database) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = [start]
    store = JobStore(database, estimate_default_s=30, clock=lambda: now[0])
    first, _ = await store.create(spec(), tenant=TENANT)
    assert await store.claim(first.id, "w", 30)
    now[0] = start + timedelta(seconds=12)
    await store.succeed(first.id, "w", [])

    second, _ = await store.create(spec(), tenant=TENANT)
    claimed = await store.claim(second.id, "w", 30)

    assert second.estimated_completion_time.ToDatetime(UTC) == now[0] + timedelta(seconds=12)
    assert claimed is not None
    running = claimed[1].job
    assert running.estimated_completion_time.ToDatetime(UTC) == now[0] + timedelta(seconds=12)
