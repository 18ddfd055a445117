"""ListJobs filters in the store (SQLite and PostgreSQL): state, model and creation time, and
page cursors that stay inside the filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mediagen.jobs.database import Database
from mediagen.jobs.listing import JobFilter
from mediagen.jobs.states import JobState
from mediagen.jobs.store import JobStore
from mediagen.jobs.validation import validate_generate
from mediagen.v1 import media_generation_service_pb2 as pb

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
VERSION = "a" * 64
#: Model names with `_`, which a careless LIKE would treat as a wildcard.
MODELS = ("acme/img_gen", f"acme/img_gen:{VERSION}", "acme/imgxgen", "acme/img_gen-2")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database: Database, clock: Clock) -> JobStore:
    return JobStore(database, clock=clock)


async def _create(store: JobStore, clock: Clock, minute: int, model: str) -> str:
    clock.now = T0 + timedelta(minutes=minute)
    spec = validate_generate(
        pb.GenerateMediaRequest(prompt=f"job at {minute}", model=model),
        default_model=MODELS[0],
        allowed_models=MODELS,
    )
    job, _ = await store.create(spec, tenant="acme")
    return job.id


async def _ids(store: JobStore, where: JobFilter) -> list[str]:
    page = await store.list_jobs(tenant="acme", where=where, limit=100)
    assert page.total_size == len(page.jobs)
    return [job.id for job in page.jobs]


async def test_filters_by_model_state_and_creation_time(store: JobStore, clock: Clock) -> None:
    ids = [await _create(store, clock, minute, model) for minute, model in enumerate(MODELS)]
    canceled, _ = await store.cancel(ids[1], tenant="acme")
    newest_first = ids[::-1]

    # owner/name matches its versions; a version matches itself; `_` is no wildcard.
    assert await _ids(store, JobFilter(model="acme/img_gen")) == [ids[1], ids[0]]
    assert await _ids(store, JobFilter(model=MODELS[1])) == [ids[1]]
    assert await _ids(store, JobFilter(model="acme/img_gen-2")) == [ids[3]]
    assert await _ids(store, JobFilter(model="acme/other")) == []
    # After is inclusive, before exclusive: [minute 1, minute 3) is jobs 1 and 2.
    window = JobFilter(
        created_after=T0 + timedelta(minutes=1), created_before=T0 + timedelta(minutes=3)
    )
    assert await _ids(store, window) == [ids[2], ids[1]]
    assert await _ids(store, JobFilter(created_after=T0 + timedelta(minutes=3))) == [ids[3]]
    assert await _ids(store, JobFilter(created_before=T0)) == []
    # Filters combine.
    assert await _ids(store, JobFilter(status=JobState.CANCELED, model="acme/img_gen")) == [
        canceled.id
    ]
    assert await _ids(store, JobFilter(status=JobState.PENDING, model="acme/img_gen")) == [ids[0]]
    assert await _ids(store, JobFilter()) == newest_first


async def test_pages_stay_inside_the_filter(store: JobStore, clock: Clock) -> None:
    ids = [await _create(store, clock, minute, MODELS[minute % 2]) for minute in range(7)]
    where = JobFilter(model="acme/img_gen", created_after=T0 + timedelta(minutes=1))

    first = await store.list_jobs(tenant="acme", where=where, limit=2)
    assert first.next_cursor is not None
    rest = await store.list_jobs(tenant="acme", where=where, limit=10, cursor=first.next_cursor)

    seen = [job.id for job in first.jobs + rest.jobs]
    assert seen == ids[:0:-1]  # every job after minute 0, each once, newest first
    assert first.total_size == rest.total_size == 6
    assert first.next_cursor.filter_key == where.key() != JobFilter().key()
    assert rest.next_cursor is None
