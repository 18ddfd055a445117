"""The store's side of the quotas, on real SQLite and PostgreSQL: a tenant's active jobs
(PENDING + RUNNING, never another tenant's, never finished ones) and request_id lookups."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from google.rpc import status_pb2

from mediagen.jobs.database import Database
from mediagen.jobs.store import JobStore
from tests.jobs.test_store import spec

A, B = "tenant-a", "tenant-b"


@pytest.fixture
def store(database: Database) -> JobStore:
    return JobStore(database, estimate_default_s=30)


async def test_active_jobs_count_pending_and_running_of_one_tenant(store: JobStore) -> None:
    assert (await store.active_jobs(A)).count == 0
    assert (await store.active_jobs(A)).next_done_at is None
    pending, _ = await store.create(spec("pending"), tenant=A)
    running, _ = await store.create(spec("running"), tenant=A)
    assert await store.claim(running.id, "w", 30)
    done, _ = await store.create(spec("failed"), tenant=A)
    assert await store.claim(done.id, "w", 30)
    await store.fail(done.id, "w", status_pb2.Status(code=3, message="bad"))
    cancelled, _ = await store.create(spec("cancelled"), tenant=A)
    await store.cancel(cancelled.id, tenant=A)
    await store.create(spec("b's"), tenant=B)

    active = await store.active_jobs(A)
    assert active.count == 2
    # The earliest estimate among the two still active (both 30 s after their start).
    assert active.next_done_at is not None
    first = pending.estimated_completion_time.ToDatetime().replace(
        tzinfo=active.next_done_at.tzinfo
    )
    assert abs(active.next_done_at - first) < timedelta(seconds=1)
    assert (await store.active_jobs(B)).count == 1


async def test_find_by_request_id_is_per_tenant(store: JobStore) -> None:
    rid = str(uuid.uuid4())
    job, _ = await store.create(spec("first", request_id=rid), tenant=A)
    found = await store.find_by_request_id(A, rid)
    assert found is not None and found.id == job.id
    assert await store.find_by_request_id(B, rid) is None
    assert await store.find_by_request_id(A, str(uuid.uuid4())) is None
