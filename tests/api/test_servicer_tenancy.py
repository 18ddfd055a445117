"""The servicer scopes every RPC to the caller of :func:`current_principal` (set here with
``acting_as``, as the auth interceptor does per call), against a real store on SQLite and
PostgreSQL: another tenant's ids are NOT_FOUND, listings and watches show one's own, an admin
sees everything, page tokens and request_ids belong to one tenant.

The end-to-end version (real API keys over real gRPC and HTTP) is in tests/integration.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc
import pytest

from mediagen.api.servicer import MediaGenerationServicer
from mediagen.auth.principal import DEFAULT_TENANT, Principal, Role, acting_as
from mediagen.config import Settings
from mediagen.events.bus import InProcessBus, Subscription
from mediagen.jobs.database import Database
from mediagen.jobs.store import JobStore, NewMedia
from mediagen.storage.memory import MemoryStorage
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb

ALICE = Principal(tenant="alice")
BOB = Principal(tenant="bob")
ADMIN = Principal(tenant="ops", role=Role.ADMIN)


class Aborted(Exception):
    """What ``context.abort_with_status`` raises (grpc raises its own AbortError)."""

    def __init__(self, status: grpc.Status) -> None:
        super().__init__(status.details)
        self.code = status.code
        self.details = status.details


class Context:
    """The one part of a ServicerContext the servicer touches: aborting with a status."""

    async def abort_with_status(self, status: grpc.Status) -> None:
        raise Aborted(status)


class CountingBus(InProcessBus):
    """The in-process bus, counting subscriptions (WatchJob must check before subscribing)."""

    def __init__(self) -> None:
        super().__init__()
        self.subscribed: list[str] = []

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[Subscription]:
        self.subscribed.append(job_id)
        return super().subscribe(job_id)


@pytest.fixture
def store(database: Database) -> JobStore:
    return JobStore(database)


@pytest.fixture
def bus() -> CountingBus:
    return CountingBus()


@pytest.fixture
def servicer(store: JobStore, bus: CountingBus) -> MediaGenerationServicer:
    async def enqueue(job_id: str) -> None:
        return None

    return MediaGenerationServicer(Settings(), store, bus, MemoryStorage(), enqueue)


async def generate(
    servicer: MediaGenerationServicer, who: Principal, prompt: str, request_id: str = ""
) -> job_pb2.Job:
    with acting_as(who):
        request = pb.GenerateMediaRequest(prompt=prompt, request_id=request_id)
        return (await servicer.GenerateMedia(request, Context())).job  # type: ignore[arg-type]


async def call(servicer: MediaGenerationServicer, who: Principal, name: str, request: Any) -> Any:
    with acting_as(who):
        return await getattr(servicer, name)(request, Context())


async def watch(
    servicer: MediaGenerationServicer, who: Principal, job_id: str
) -> list[job_pb2.JobEvent]:
    with acting_as(who):
        stream: AsyncIterator[pb.WatchJobResponse] = servicer.WatchJob(
            pb.WatchJobRequest(id=job_id),
            Context(),  # type: ignore[arg-type]
        )
        return [response.event async for response in stream]


async def not_found(coro: Any) -> Aborted:
    with pytest.raises(Aborted) as err:
        await coro
    assert err.value.code == grpc.StatusCode.NOT_FOUND, err.value.details
    return err.value


async def finish_with_media(store: JobStore, job_id: str) -> str:
    assert await store.claim(job_id, "w", 30)
    media = NewMedia(0, "image", "image/png", f"{job_id}/0.png", 8, 8, 10, "ef" * 32)
    event = await store.succeed(job_id, "w", [media])
    return event.job.media[0].id


async def test_another_tenants_job_is_not_found_on_every_rpc(
    servicer: MediaGenerationServicer, store: JobStore, bus: CountingBus
) -> None:
    job = await generate(servicer, ALICE, "alice's fox")
    unknown = str(uuid.uuid4())
    for name, make in (
        ("GetJob", lambda i: pb.GetJobRequest(id=i)),
        ("CancelJob", lambda i: pb.CancelJobRequest(id=i)),
    ):
        foreign = await not_found(call(servicer, BOB, name, make(job.id)))
        missing = await not_found(call(servicer, BOB, name, make(unknown)))
        assert foreign.details.replace(job.id, unknown) == missing.details

    subscribed = len(bus.subscribed)
    foreign = await not_found(watch(servicer, BOB, job.id))
    assert foreign.details == f"job {job.id!r} not found"
    assert len(bus.subscribed) == subscribed  # refused before subscribing

    media_id = await finish_with_media(store, job.id)
    foreign = await not_found(call(servicer, BOB, "GetMedia", pb.GetMediaRequest(id=media_id)))
    missing = await not_found(call(servicer, BOB, "GetMedia", pb.GetMediaRequest(id=unknown)))
    assert foreign.details.replace(media_id, unknown) == missing.details

    # Alice still has all of it, untouched by Bob's cancel.
    mine = (await call(servicer, ALICE, "GetJob", pb.GetJobRequest(id=job.id))).job
    assert mine.status == job_pb2.JOB_STATE_SUCCEEDED
    events = await watch(servicer, ALICE, job.id)
    assert events[-1].job.status == job_pb2.JOB_STATE_SUCCEEDED
    media = (await call(servicer, ALICE, "GetMedia", pb.GetMediaRequest(id=media_id))).media
    assert media.sha256 == "ef" * 32 and media.url == f"memory://media/{job.id}/0.png"


async def test_listings_are_per_tenant_and_an_admin_sees_all(
    servicer: MediaGenerationServicer,
) -> None:
    alice = [(await generate(servicer, ALICE, f"a{i}")).id for i in range(3)]
    bob = [(await generate(servicer, BOB, f"b{i}")).id for i in range(2)]

    async def listed(who: Principal, **fields: Any) -> pb.ListJobsResponse:
        response: pb.ListJobsResponse = await call(
            servicer, who, "ListJobs", pb.ListJobsRequest(**fields)
        )
        return response

    mine = await listed(ALICE)
    assert [j.id for j in mine.jobs] == alice[::-1] and mine.total_size == 3
    assert [j.id for j in (await listed(BOB)).jobs] == bob[::-1]
    offset = await listed(BOB, page=1, per_page=10)
    assert [j.id for j in offset.jobs] == bob[::-1] and offset.total_size == 2
    everyone = await listed(ADMIN)
    assert [j.id for j in everyone.jobs] == (alice + bob)[::-1] and everyone.total_size == 5

    # Token paging stays within the tenant, and a token is good only for its own caller.
    first = await listed(ALICE, page_size=2)
    assert first.next_page_token
    rest = await listed(ALICE, page_size=2, page_token=first.next_page_token)
    assert [j.id for j in (*first.jobs, *rest.jobs)] == alice[::-1]
    for other in (BOB, ADMIN):
        with pytest.raises(Aborted) as err:
            await listed(other, page_size=2, page_token=first.next_page_token)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in err.value.details
    admin_page = await listed(ADMIN, page_size=4)
    with pytest.raises(Aborted) as err:
        await listed(ALICE, page_size=4, page_token=admin_page.next_page_token)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_admin_reads_watches_and_cancels_any_tenants_job(
    servicer: MediaGenerationServicer,
) -> None:
    job = await generate(servicer, BOB, "bob's owl")
    got = (await call(servicer, ADMIN, "GetJob", pb.GetJobRequest(id=job.id))).job
    assert got.id == job.id
    cancelled = (await call(servicer, ADMIN, "CancelJob", pb.CancelJobRequest(id=job.id))).job
    assert cancelled.status == job_pb2.JOB_STATE_CANCELED
    events = await watch(servicer, ADMIN, job.id)
    assert [e.job.status for e in events] == [
        job_pb2.JOB_STATE_PENDING,
        job_pb2.JOB_STATE_CANCELED,
    ]
    # Bob sees the admin's cancellation of his job.
    assert (await watch(servicer, BOB, job.id))[-1].job.status == job_pb2.JOB_STATE_CANCELED


async def test_generate_creates_in_the_callers_tenant_and_request_ids_are_per_tenant(
    servicer: MediaGenerationServicer, store: JobStore
) -> None:
    rid = str(uuid.uuid4())
    a1 = await generate(servicer, ALICE, "same key", rid)
    b1 = await generate(servicer, BOB, "same key", rid)
    assert a1.id != b1.id
    assert (await generate(servicer, ALICE, "retried", rid)).id == a1.id
    assert (await generate(servicer, BOB, "retried", rid)).id == b1.id
    # Each job landed in its creator's tenant (the store's view, unscoped by the servicer).
    assert (await store.get(a1.id, tenant="alice")).id == a1.id
    assert (await store.get(b1.id, tenant="bob")).id == b1.id


async def test_without_authentication_everything_is_the_default_tenant(
    servicer: MediaGenerationServicer, store: JobStore
) -> None:
    # No acting_as: the caller is ANONYMOUS, as when authentication is off.
    job = (await servicer.GenerateMedia(pb.GenerateMediaRequest(prompt="x"), Context())).job  # type: ignore[arg-type]
    assert (await store.get(job.id, tenant=DEFAULT_TENANT)).id == job.id
    other = await generate(servicer, ALICE, "alice's")
    listed = await servicer.ListJobs(pb.ListJobsRequest(), Context())  # type: ignore[arg-type]
    assert {j.id for j in listed.jobs} == {job.id, other.id}
