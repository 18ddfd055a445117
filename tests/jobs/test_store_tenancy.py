"""Tenants in the JobStore, on real SQLite and PostgreSQL: one tenant never sees, lists, watches
or cancels another's jobs or media, an admin scope (None) sees all, request_id is per tenant."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from mediagen.errors import InvalidArgument, JobNotFound, MediaNotFound, NotFound
from mediagen.jobs.database import Database
from mediagen.jobs.listing import NO_FILTER, JobFilter
from mediagen.jobs.pagination import decode_token, encode_token
from mediagen.jobs.states import JobState
from mediagen.jobs.store import JobStore, NewMedia
from mediagen.v1 import job_pb2
from tests.jobs.test_store import spec

A, B = "tenant-a", "tenant-b"


@pytest.fixture
def store(database: Database) -> JobStore:
    return JobStore(database, estimate_default_s=30)


def same_shape(foreign: NotFound, unknown: NotFound) -> None:
    """A foreign id's error is an unknown id's error with the id swapped: nothing tells them
    apart (code, reason, message, details)."""
    assert type(foreign) is type(unknown)
    as_unknown = (
        foreign.to_status()
        .SerializeToString()
        .replace(foreign.resource_id.encode(), unknown.resource_id.encode())
    )
    assert as_unknown == unknown.to_status().SerializeToString()


async def succeeded_with_media(store: JobStore, tenant: str) -> job_pb2.Job:
    job, _ = await store.create(spec(f"media of {tenant}"), tenant=tenant)
    assert await store.claim(job.id, "w", 30)
    media = NewMedia(0, "image", "image/png", f"{job.id}/0.png", 8, 8, 10, "cd" * 32)
    return (await store.succeed(job.id, "w", [media])).job


async def test_another_tenants_job_is_not_found_like_an_unknown_one(store: JobStore) -> None:
    mine, _ = await store.create(spec("a's job"), tenant=A)
    unknown = str(uuid.uuid4())
    assert mine.tenant == A and (await store.get(mine.id, tenant=A)).id == mine.id

    for call in (
        lambda job_id: store.get(job_id, tenant=B),
        lambda job_id: store.events_after(job_id, 0, tenant=B),
        lambda job_id: store.cancel(job_id, tenant=B),
    ):
        with pytest.raises(JobNotFound) as foreign:
            await call(mine.id)
        with pytest.raises(JobNotFound) as missing:
            await call(unknown)
        same_shape(foreign.value, missing.value)

    # B's cancel left A's job alone: still PENDING, only its creation event.
    assert (await store.get(mine.id, tenant=A)).status == job_pb2.JOB_STATE_PENDING
    assert [e.sequence for e in await store.events_after(mine.id, 0, tenant=A)] == [1]


async def test_another_tenant_cannot_request_cancellation_of_a_running_job(
    store: JobStore,
) -> None:
    job, _ = await store.create(spec(), tenant=A)
    assert await store.claim(job.id, "w", 30)
    with pytest.raises(JobNotFound):
        await store.cancel(job.id, tenant=B)
    assert await store.renew(job.id, "w", 30) is False  # the worker was not told to cancel
    cancelled, event = await store.cancel(job.id, tenant=A)
    assert cancelled.cancel_requested and event is not None


async def test_admin_scope_sees_and_cancels_every_tenants_jobs(store: JobStore) -> None:
    a, _ = await store.create(spec("a"), tenant=A)
    b, _ = await store.create(spec("b"), tenant=B)
    assert (await store.get(a.id, tenant=None)).id == a.id
    assert (await store.get(b.id, tenant=None)).id == b.id
    assert [e.sequence for e in await store.events_after(b.id, 0, tenant=None)] == [1]
    everything = await store.list_jobs(tenant=None, limit=10)
    assert [j.id for j in everything.jobs] == [b.id, a.id] and everything.total_size == 2
    assert [j.tenant for j in everything.jobs] == [B, A]  # whose each one is
    cancelled, _ = await store.cancel(b.id, tenant=None)
    assert cancelled.status == job_pb2.JOB_STATE_CANCELED


async def test_listing_shows_only_ones_own_jobs_and_pages_within_them(store: JobStore) -> None:
    a_ids = []
    b_ids = []
    for i in range(5):  # interleaved, so a page of A's spans B's rows in the index order
        a_ids.append((await store.create(spec(f"a{i}"), tenant=A))[0].id)
        b_ids.append((await store.create(spec(f"b{i}"), tenant=B))[0].id)
    assert await store.claim(b_ids[0], "w", 30)

    first = await store.list_jobs(tenant=A, limit=2)
    assert [j.id for j in first.jobs] == a_ids[::-1][:2] and first.total_size == 5
    assert first.next_cursor is not None and first.next_cursor.tenant_scope == A
    rest = await store.list_jobs(tenant=A, limit=10, cursor=first.next_cursor)
    assert [j.id for j in rest.jobs] == a_ids[::-1][2:] and rest.next_cursor is None

    offset = await store.list_jobs(tenant=B, limit=2, offset=4)
    assert [j.id for j in offset.jobs] == [b_ids[0]] and offset.total_size == 5
    running_a = await store.list_jobs(tenant=A, where=JobFilter(status=JobState.RUNNING), limit=10)
    assert running_a.jobs == [] and running_a.total_size == 0
    running_b = await store.list_jobs(tenant=B, where=JobFilter(status=JobState.RUNNING), limit=10)
    assert [j.id for j in running_b.jobs] == [b_ids[0]]
    assert (await store.list_jobs(tenant="nobody", limit=10)).total_size == 0


async def test_a_page_token_of_one_tenant_is_refused_for_another(store: JobStore) -> None:
    for i in range(3):
        await store.create(spec(f"a{i}"), tenant=A)
    page = await store.list_jobs(tenant=A, limit=1)
    assert page.next_cursor is not None
    token = encode_token(page.next_cursor, "secret")
    assert (
        decode_token(token, "secret", filter_key=NO_FILTER.key(), tenant_scope=A)
        == page.next_cursor
    )
    for other in (B, None):  # another tenant, and an admin's every-tenant listing
        with pytest.raises(InvalidArgument, match="issued to another caller"):
            decode_token(token, "secret", filter_key=NO_FILTER.key(), tenant_scope=other)


async def test_request_id_deduplicates_per_tenant(store: JobStore) -> None:
    rid = str(uuid.uuid4())
    a1, a_event = await store.create(spec("a", request_id=rid), tenant=A)
    b1, b_event = await store.create(spec("b", request_id=rid), tenant=B)
    assert a_event is not None and b_event is not None  # two jobs, one per tenant
    assert a1.id != b1.id
    a2, none_a = await store.create(spec("a again", request_id=rid), tenant=A)
    b2, none_b = await store.create(spec("b again", request_id=rid), tenant=B)
    assert (a2.id, b2.id, none_a, none_b) == (a1.id, b1.id, None, None)
    assert (await store.get(b2.id, tenant=B)).prompt == "b"


async def test_concurrent_duplicates_make_one_job_per_tenant(store: JobStore) -> None:
    rid = str(uuid.uuid4())
    results = await asyncio.gather(
        *(store.create(spec(request_id=rid), tenant=t) for t in (A, B) * 4)
    )
    by_tenant: dict[str, set[str]] = {A: set(), B: set()}
    for tenant, (job, _) in zip((A, B) * 4, results, strict=True):
        by_tenant[tenant].add(job.id)
    assert all(len(ids) == 1 for ids in by_tenant.values())
    assert by_tenant[A] != by_tenant[B]
    assert sum(event is not None for _, event in results) == 2


async def test_media_belong_to_their_jobs_tenant(store: JobStore) -> None:
    job = await succeeded_with_media(store, A)
    (media,) = job.media
    assert (await store.get_media(media.id, tenant=A)).sha256 == "cd" * 32
    assert (await store.get_media(media.id, tenant=None)).id == media.id
    with pytest.raises(MediaNotFound) as foreign:
        await store.get_media(media.id, tenant=B)
    with pytest.raises(MediaNotFound) as missing:
        await store.get_media(str(uuid.uuid4()), tenant=B)
    same_shape(foreign.value, missing.value)
    with pytest.raises(JobNotFound):
        await store.get(job.id, tenant=B)
