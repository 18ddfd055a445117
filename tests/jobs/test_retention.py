"""Retention against real SQLite and PostgreSQL (every test runs on both), with media in local
files or in S3 (the moto server): what goes, what stays, and passes that overlap or die."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.rpc import code_pb2, status_pb2
from prometheus_client import REGISTRY

from mediagen.config import S3Settings
from mediagen.errors import JobNotFound, MediaNotFound
from mediagen.jobs.database import Database
from mediagen.jobs.expired import ExpiredJobs, Removed
from mediagen.jobs.store import JobStore, NewMedia
from mediagen.jobs.validation import JobSpec, validate_generate
from mediagen.storage.base import Storage
from mediagen.storage.local import LocalStorage
from mediagen.storage.memory import MemoryStorage
from mediagen.storage.s3 import S3Storage
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.worker.retention import HOLD_S, Retention
from tests.fixtures.emulator import wait_until

MODEL = "stability-ai/sdxl"
TENANT = "acme"
REQUEST_ID = "4b8c5a52-29a8-4b7e-9f0e-0d1b2a6f3c11"
DAY = timedelta(days=1)
#: When the old jobs ran; the passes run ten days later, keeping one day.
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + 10 * DAY
PNG = b"\x89PNG not really, but bytes all the same"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    clock: Clock
    store: JobStore
    expired: ExpiredJobs
    storage: Storage

    def retention(self, *, batch_size: int = 2) -> Retention:
        return Retention(
            self.expired,
            self.storage,
            age_s=DAY.total_seconds(),
            interval_s=60,
            batch_size=batch_size,
            clock=self.clock,
        )

    async def job(
        self,
        *,
        at: datetime,
        end: str = "succeeded",
        outputs: int = 1,
        finish_at: datetime | None = None,
        request_id: str | None = None,
    ) -> job_pb2.Job:
        """A job created at ``at`` and taken to ``end`` (at ``finish_at``, default ``at``)."""
        self.clock.now = at
        job, _ = await self.store.create(spec(request_id), tenant=TENANT)
        if end == "canceled":
            await self.store.cancel(job.id, tenant=TENANT)
        elif end != "pending":
            assert await self.store.claim(job.id, "w", 30) is not None
            self.clock.now = finish_at or at
            if end == "succeeded":
                media = [await self._output(job.id, n) for n in range(outputs)]
                await self.store.succeed(job.id, "w", media)
            elif end == "failed":
                await self.store.fail(job.id, "w", status_pb2.Status(code=code_pb2.INTERNAL))
        self.clock.now = NOW
        return await self.store.get(job.id, tenant=TENANT)

    async def _output(self, job_id: str, position: int) -> NewMedia:
        key = f"{job_id}/{position}.png"
        stored = await self.storage.put_stream(key, _chunks(PNG), content_type="image/png")
        return NewMedia(position, "image", "image/png", key, 8, 8, stored.size_bytes, "ab" * 32)

    async def gone(self, job: job_pb2.Job) -> bool:
        try:
            await self.store.get(job.id, tenant=None)
        except JobNotFound:
            return True
        return False


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def spec(request_id: str | None = None) -> JobSpec:
    return validate_generate(
        pb.GenerateMediaRequest(prompt="a red fox", request_id=request_id or ""),
        default_model=MODEL,
        allowed_models=(MODEL,),
    )


def keys_of(job: job_pb2.Job) -> list[str]:
    return [f"{job.id}/{position}.png" for position in range(len(job.media))]


def deleted(kind: str) -> float:
    return REGISTRY.get_sample_value("mediagen_retention_deleted_total", {"kind": kind}) or 0.0


def counted() -> dict[str, float]:
    return {
        **{kind: deleted(kind) for kind in ("jobs", "events", "media")},
        "bytes": REGISTRY.get_sample_value("mediagen_retention_deleted_bytes_total") or 0.0,
        "storage_failures": REGISTRY.get_sample_value(
            "mediagen_retention_failures_total", {"reason": "storage"}
        )
        or 0.0,
    }


def moved(before: dict[str, float]) -> dict[str, float]:
    return {name: value - before[name] for name, value in counted().items()}


def _world(database: Database, storage: Storage) -> World:
    clock = Clock(NOW)
    return World(
        clock, JobStore(database, clock=clock), ExpiredJobs(database, clock=clock), storage
    )


@pytest.fixture
async def local(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path / "media", "http://media.test", secret_key="k")
    await storage.start()
    return storage


@pytest.fixture
def world(database: Database, local: LocalStorage) -> World:
    return _world(database, local)


def files(storage: LocalStorage) -> set[str]:
    return {str(p.relative_to(storage.root)) for p in storage.root.rglob("*") if p.is_file()}


async def test_old_finished_jobs_go_with_their_events_media_and_files(
    world: World, local: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    old = [
        await world.job(at=T0, outputs=2, request_id=REQUEST_ID),
        await world.job(at=T0, end="failed"),
        await world.job(at=T0, end="canceled"),
    ]
    recent = await world.job(at=NOW - DAY / 2)
    # Created long ago, finished within the day: its age counts from its end.
    long_run = await world.job(at=T0, finish_at=NOW - DAY / 2)
    media_ids = [m.id for m in old[0].media]
    before = counted()

    with caplog.at_level(logging.INFO, logger="mediagen.worker.retention"):
        removed = await world.retention().run_once()

    assert removed == Removed(jobs=3, events=3 + 3 + 2, media=2, media_bytes=2 * len(PNG))
    assert [r.getMessage() for r in caplog.records] == [
        f"retention removed 3 job(s) finished before 2026-01-10T00:00:00+00:00: 8 event(s), "
        f"2 media file(s), {2 * len(PNG)} bytes"
    ]
    assert moved(before) == {
        "jobs": 3,
        "events": 8,
        "media": 2,
        "bytes": 2 * len(PNG),
        "storage_failures": 0,
    }
    assert [await world.gone(job) for job in old] == [True, True, True]
    for media_id in media_ids:
        with pytest.raises(MediaNotFound):
            await world.store.get_media(media_id, tenant=None)
    with pytest.raises(JobNotFound):
        await world.store.events_after(old[1].id, 0, tenant=None)
    assert files(local) == {*keys_of(recent), *keys_of(long_run)}
    for job in (recent, long_run):
        assert await world.store.get(job.id, tenant=TENANT) == job
        assert len(await world.store.events_after(job.id, 0, tenant=TENANT)) == 3
    # The deleted job's request_id starts a new job now.
    again = await world.job(at=NOW, end="pending", request_id=REQUEST_ID)
    assert again.id != old[0].id
    # Nothing is left to do: a second pass deletes nothing, and says nothing.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mediagen.worker.retention"):
        assert await world.retention().run_once() == Removed()
    assert caplog.records == []


async def test_running_and_pending_jobs_are_never_deleted(world: World) -> None:
    # Both from long ago; the running one's lease expired long ago too (its worker is gone).
    running = await world.job(at=T0, end="running")
    pending = await world.job(at=T0, end="pending")
    retention = world.retention()
    retention.age_s = 0.0  # everything finished counts as expired

    assert await retention.run_once() == Removed()

    assert await world.store.get(running.id, tenant=None) == running
    assert await world.store.get(pending.id, tenant=None) == pending
    assert running.status == job_pb2.JOB_STATE_RUNNING
    assert pending.status == job_pb2.JOB_STATE_PENDING


async def test_two_passes_at_once_delete_every_job_exactly_once(
    world: World, local: LocalStorage
) -> None:
    old = [await world.job(at=T0) for _ in range(7)]
    before = counted()

    results = await asyncio.gather(world.retention().run_once(), world.retention().run_once())

    assert sum((r for r in results), Removed()) == Removed(
        jobs=7, events=21, media=7, media_bytes=7 * len(PNG)
    )
    assert moved(before)["jobs"] == 7
    assert [await world.gone(job) for job in old] == [True] * 7
    assert files(local) == set()


async def test_a_pass_that_died_after_deleting_the_files_is_finished_by_a_later_one(
    world: World, local: LocalStorage
) -> None:
    job = await world.job(at=T0)
    # The dead pass leased the job and deleted its file, then never got to the rows.
    (taken,) = await world.expired.take(
        finished_before=NOW - DAY, owner="retention:dead", limit=10, hold_s=HOLD_S
    )
    assert taken.keys == tuple(keys_of(job))
    assert await local.delete_many(taken.keys) == frozenset()

    # While its lease holds, no other pass touches the job.
    assert await world.retention().run_once() == Removed()
    assert not await world.gone(job)

    world.clock.now = NOW + timedelta(seconds=HOLD_S + 1)
    removed = await world.retention().run_once()

    assert removed == Removed(jobs=1, events=3, media=1, media_bytes=len(PNG))
    assert await world.gone(job)
    # The dead pass, had it woken up, would find nothing of its own left to delete.
    assert await world.expired.remove([job.id], "retention:dead") == Removed()


async def test_a_job_whose_file_cannot_be_removed_keeps_its_rows_until_it_can(
    world: World, local: LocalStorage
) -> None:
    stuck = await world.job(at=T0)
    fine = await world.job(at=T0)
    (key,) = keys_of(stuck)
    local.path_for(key).unlink()
    local.path_for(key).mkdir()  # unlinking a directory fails, even for root
    before = counted()

    removed = await world.retention().run_once()

    assert removed.jobs == 1 and await world.gone(fine)
    assert await world.store.get(stuck.id, tenant=None) == stuck
    assert moved(before)["storage_failures"] == 1

    local.path_for(key).rmdir()
    world.clock.now = NOW + timedelta(seconds=HOLD_S + 1)  # its lease runs out: next pass
    assert (await world.retention().run_once()).jobs == 1
    assert await world.gone(stuck)


async def test_media_are_removed_from_s3(database: Database, s3_settings: S3Settings) -> None:
    storage = S3Storage(s3_settings)
    await storage.start()
    try:
        world = _world(database, storage)
        old = await world.job(at=T0, outputs=3)
        recent = await world.job(at=NOW)

        removed = await world.retention(batch_size=10).run_once()

        assert (removed.jobs, removed.media) == (1, 3)
        assert [await storage.exists(key) for key in keys_of(old)] == [False] * 3
        assert await storage.exists(keys_of(recent)[0])
    finally:
        await storage.close()


async def test_passes_go_on_while_the_database_is_down(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on port 1: every pass finds the database unavailable.
    down = Database("postgresql+asyncpg://postgres@127.0.0.1:1/mediagen")
    retention = Retention(
        ExpiredJobs(down), MemoryStorage(), age_s=1.0, interval_s=0.01, batch_size=10
    )

    async def failures() -> float:
        labels = {"reason": "database"}
        return REGISTRY.get_sample_value("mediagen_retention_failures_total", labels) or 0.0

    before = await failures()
    task = asyncio.create_task(retention.run_forever())
    try:
        await wait_until(failures, lambda n: n >= before + 2, timeout_s=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await down.dispose()
    assert "retention pass stopped: database unavailable" in caplog.text
