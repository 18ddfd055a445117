"""WatchJob costs nothing while nothing happens: a quiet stream sends no statement to the
database, yet misses no event. The bus says when it may have lost some (a dropped Redis
connection, a reader too far behind) and the stream reads the store then; a jump in the
sequence does the same; an event Redis refused is sent again once Redis takes it. A stopping
server wakes the quiet streams to end them (UNAVAILABLE, with where to resume)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from sqlalchemy import event
from sqlalchemy.engine import Engine

from mediagen.api.servicer import MediaGenerationServicer
from mediagen.auth.principal import ANONYMOUS, acting_as
from mediagen.config import Settings
from mediagen.events.bus import QUEUE_SIZE, EventBus, InProcessBus, Subscription
from mediagen.events.redis import RedisBus
from mediagen.jobs.database import Database
from mediagen.jobs.store import JobStore
from mediagen.jobs.validation import validate_generate
from mediagen.storage.memory import MemoryStorage
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from tests.fixtures.redis_server import PrivateRedis

#: Longer than the periodic re-read quiet streams used to make (every 2 s).
QUIET_S = 2.5


class Context:
    async def abort_with_status(self, status: Any) -> None:
        raise AssertionError(f"stream aborted: {status}")


@contextlib.contextmanager
def counted_statements() -> Iterator[list[str]]:
    """Every statement any engine sends while the block runs."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


class Watcher:
    """One WatchJob stream, its events handed over as they come."""

    def __init__(self, servicer: MediaGenerationServicer, job_id: str) -> None:
        self.events: asyncio.Queue[job_pb2.JobEvent] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(servicer, job_id))

    async def _run(self, servicer: MediaGenerationServicer, job_id: str) -> None:
        with acting_as(ANONYMOUS):
            stream: AsyncIterator[pb.WatchJobResponse] = servicer.WatchJob(
                pb.WatchJobRequest(id=job_id),
                Context(),  # type: ignore[arg-type]
            )
            async for response in stream:
                self.events.put_nowait(response.event)

    async def next(self, timeout_s: float = 5.0) -> job_pb2.JobEvent:
        return await asyncio.wait_for(self.events.get(), timeout_s)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
def store(database: Database) -> JobStore:
    return JobStore(database)


def servicer_on(store: JobStore, bus: EventBus) -> MediaGenerationServicer:
    async def enqueue(job_id: str) -> None:
        return None

    return MediaGenerationServicer(Settings(), store, bus, MemoryStorage(), enqueue)


async def pending_job(store: JobStore) -> job_pb2.Job:
    spec = validate_generate(
        pb.GenerateMediaRequest(prompt="quiet"),
        default_model="acme/quiet",
        allowed_models=("acme/quiet",),
    )
    job, _ = await store.create(spec, tenant=ANONYMOUS.tenant)
    return job


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_quiet_stream_reads_nothing_and_a_gap_is_filled(store: JobStore) -> None:
    bus = InProcessBus()
    job = await pending_job(store)
    watcher = Watcher(servicer_on(store, bus), job.id)
    try:
        assert (await watcher.next()).sequence == 1
        with counted_statements() as statements:
            await asyncio.sleep(QUIET_S)
        assert statements == []

        # The very next event comes from the bus alone.
        claimed = await store.claim(job.id, "w", 30)
        assert claimed is not None
        with counted_statements() as statements:
            await bus.publish(claimed[1])
            assert (await watcher.next()).sequence == 2
        assert statements == []

        # An event the bus never carried shows as a jump: the stream reads it from the store.
        await store.progress(job.id, "w", 0.2)
        later = await store.progress(job.id, "w", 0.4)
        assert later is not None
        await bus.publish(later)
        filled = [await watcher.next() for _ in range(2)]
        assert [e.sequence for e in filled] == [3, 4]
        assert filled[-1].job.progress == pytest.approx(0.4)
    finally:
        await watcher.close()


def test_a_reader_too_far_behind_is_told_it_missed_events() -> None:
    async def scenario() -> None:
        sub = Subscription()
        events = [job_pb2.JobEvent(sequence=n) for n in range(1, QUEUE_SIZE + 3)]
        for e in events:
            sub.deliver(e)
        assert await sub.get() is None  # read the store: some were dropped
        assert (await sub.get()) == events[0]

    asyncio.run(scenario())


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_dropped_bus_connection_makes_the_stream_read_what_it_missed(
    store: JobStore, private_redis: PrivateRedis
) -> None:
    bus = RedisBus(private_redis.url)
    await bus.start()
    admin = aioredis.Redis.from_url(private_redis.url)
    job = await pending_job(store)
    watcher = Watcher(servicer_on(store, bus), job.id)
    try:
        assert (await watcher.next()).sequence == 1
        # Committed but never published, then the subscriber's connection drops: after it
        # reconnects the stream reads the store at once (not on a timer).
        assert await store.claim(job.id, "w", 30) is not None
        assert await admin.client_kill_filter(_type="pubsub") == 1
        assert (await watcher.next(timeout_s=1.5)).sequence == 2
    finally:
        await watcher.close()
        await bus.close()
        await admin.aclose()


async def test_an_event_redis_refused_is_sent_once_redis_takes_it(
    private_redis: PrivateRedis,
) -> None:
    admin = aioredis.Redis.from_url(private_redis.url)
    # A publisher Redis refuses (NOPERM) until it is allowed to publish.
    await admin.acl_setuser(
        "pub", enabled=True, nopass=True, keys="*", channels="*", commands=["+@all", "-publish"]
    )
    publisher = RedisBus(f"redis://pub:any@127.0.0.1:{private_redis.port}/0")
    listener = admin.pubsub(ignore_subscribe_messages=True)
    await listener.subscribe("mediagen:events:j1")
    try:
        for sequence in (2, 3):  # neither raises; the newer replaces the older
            await publisher.publish(job_pb2.JobEvent(sequence=sequence, job=job_pb2.Job(id="j1")))
        await admin.acl_setuser(
            "pub", enabled=True, nopass=True, keys="*", channels="*", commands=["+@all"]
        )
        message = None
        async with asyncio.timeout(10):
            while message is None:
                message = await listener.get_message(timeout=1.0)
        assert job_pb2.JobEvent.FromString(message["data"]).sequence == 3
        assert await listener.get_message(timeout=0.3) is None  # 2 was never sent
    finally:
        await listener.aclose()  # type: ignore[no-untyped-call]
        await publisher.close()
        await admin.aclose()


async def test_a_subscription_made_while_redis_is_down_gets_events_once_it_is_back(
    private_redis: PrivateRedis,
) -> None:
    bus = RedisBus(private_redis.url)
    await bus.start()
    admin = aioredis.Redis.from_url(private_redis.url)
    try:
        await asyncio.to_thread(private_redis.stop)
        async with bus.subscribe("j1") as sub:  # local only: Redis is down
            await asyncio.to_thread(private_redis.start)
            event = job_pb2.JobEvent(sequence=7, job=job_pb2.Job(id="j1"))
            got = None
            async with asyncio.timeout(10):
                # Published until the reader has subscribed the channel it lacked.
                while got is None:
                    await admin.publish("mediagen:events:j1", event.SerializeToString())
                    with contextlib.suppress(TimeoutError):
                        got = await asyncio.wait_for(sub.get(), 0.2)
            assert got.sequence == 7
    finally:
        await bus.close()
        await admin.aclose()


class Aborted(Exception):
    pass


class RecordingContext:
    """Keeps the status a stream ends with (gRPC's abort raises, so does this)."""

    def __init__(self) -> None:
        self.status: Any = None

    async def abort_with_status(self, status: Any) -> None:
        self.status = status
        raise Aborted


async def ending_status(
    servicer: MediaGenerationServicer, job_id: str, first: asyncio.Event
) -> Any:
    """Watch ``job_id`` until the stream ends; the status it ended with."""
    context = RecordingContext()
    with acting_as(ANONYMOUS), contextlib.suppress(Aborted):
        stream: AsyncIterator[pb.WatchJobResponse] = servicer.WatchJob(
            pb.WatchJobRequest(id=job_id),
            context,  # type: ignore[arg-type]
        )
        async for _ in stream:
            first.set()
    return context.status


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_quiet_streams_end_at_once_when_the_server_stops(store: JobStore) -> None:
    servicer = servicer_on(store, InProcessBus())
    job = await pending_job(store)
    opened = [asyncio.Event() for _ in range(20)]
    streams = [asyncio.create_task(ending_status(servicer, job.id, first)) for first in opened]
    async with asyncio.timeout(10):
        for first in opened:
            await first.wait()
    started = time.monotonic()
    await servicer.close_streams(timeout_s=5.0)
    assert time.monotonic() - started < 1.0  # woken, not left to the grace period
    # One opened while the server stops gets its backlog, then the same end.
    late = await asyncio.wait_for(ending_status(servicer, job.id, asyncio.Event()), 5)
    for status in [*await asyncio.gather(*streams), late]:
        assert status.code == grpc.StatusCode.UNAVAILABLE
        assert "after_sequence=1" in status.details
