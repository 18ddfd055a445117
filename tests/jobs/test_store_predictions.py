"""One prediction belongs to at most one job, on SQLite and PostgreSQL; the marker's attempt."""

from __future__ import annotations

import asyncio

import pytest
from google.rpc import code_pb2, status_pb2

from mediagen.jobs.database import Database
from mediagen.jobs.store import JobStore, LeaseLost, PredictionOwned
from mediagen.jobs.validation import JobSpec, validate_generate
from mediagen.v1 import media_generation_service_pb2 as pb

MODEL = "stability-ai/sdxl"


def spec() -> JobSpec:
    return validate_generate(
        pb.GenerateMediaRequest(prompt="the same fox"), default_model=MODEL, allowed_models=(MODEL,)
    )


@pytest.fixture
def store(database: Database) -> JobStore:
    return JobStore(database, estimate_default_s=30)


async def claimed_job(store: JobStore, owner: str) -> str:
    job, _ = await store.create(spec(), tenant="t")
    assert await store.claim(job.id, owner, 30)
    return job.id


async def test_a_prediction_another_job_holds_is_refused(store: JobStore) -> None:
    first = await claimed_job(store, "w1")
    second = await claimed_job(store, "w2")
    await store.set_prediction(first, "w1", "pred-shared")

    with pytest.raises(PredictionOwned) as refused:
        await store.set_prediction(second, "w2", "pred-shared")

    assert refused.value.prediction_id == "pred-shared"
    assert await store.prediction_owners(["pred-shared", "pred-nobody"]) == {"pred-shared": first}
    await store.set_prediction(second, "w2", "pred-own")  # the refusal left the job usable
    assert await store.prediction_owners(["pred-own"]) == {"pred-own": second}


async def test_two_jobs_racing_for_one_prediction_one_wins(store: JobStore) -> None:
    jobs = [await claimed_job(store, f"w{n}") for n in range(4)]
    results = await asyncio.gather(
        *(store.set_prediction(job, f"w{n}", "pred-race") for n, job in enumerate(jobs)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert sum(isinstance(r, PredictionOwned) for r in results) == 3
    (holder,) = (await store.prediction_owners(["pred-race"])).values()
    assert holder == jobs[results.index(None)]


async def test_the_marker_attempt_survives_a_retry_and_clears_with_the_request(
    store: JobStore,
) -> None:
    job = await claimed_job(store, "w")
    requested = await store.mark_prediction_requested(job, "w", 1)
    error = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="no answer to the create")
    await store.retry(job, "w", error, 0, keep_prediction=True)

    claimed = await store.claim(job, "w2", 30)

    assert claimed is not None
    again, _ = claimed
    assert (again.attempt, again.prediction_attempt) == (2, 1)
    assert again.prediction_requested_at == requested and again.prediction_id is None
    await store.set_prediction(job, "w2", None)  # a definite refusal: nothing was made
    await store.retry(job, "w2", error, 0, keep_prediction=True)
    third = await store.claim(job, "w3", 30)
    assert third is not None
    assert (third[0].prediction_attempt, third[0].prediction_requested_at) == (None, None)


async def test_a_stale_attempt_of_the_same_owner_cannot_mark_a_create(store: JobStore) -> None:
    """A worker whose lease ran out takes its own job back as attempt 2 under the same owner
    name; attempt 1, still waiting to send its create, must not get to send it."""
    job, _ = await store.create(spec(), tenant="t")
    assert await store.claim(job.id, "w1", 0)  # a lease born expired: claimable again at once
    assert await store.claim(job.id, "w1", 30)

    with pytest.raises(LeaseLost):
        await store.mark_prediction_requested(job.id, "w1", 1)
    await store.mark_prediction_requested(job.id, "w1", 2)


async def test_finished_jobs_keep_their_prediction_unique(store: JobStore) -> None:
    done = await claimed_job(store, "w1")
    await store.set_prediction(done, "w1", "pred-old")
    await store.fail(done, "w1", status_pb2.Status(code=code_pb2.ABORTED, message="x"))
    later = await claimed_job(store, "w2")
    with pytest.raises(PredictionOwned):
        await store.set_prediction(later, "w2", "pred-old")
