"""Retention in the distributed set-up: two `mediagen scheduler` processes on the machine's
PostgreSQL and an S3 server (moto) share one backlog of expired jobs. Each expired job goes
exactly once (the two processes' counters add up to the backlog), its object leaves the
bucket, and the recent and the running job stay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from mediagen.config import S3Settings
from mediagen.jobs.database import Database
from mediagen.jobs.models import JobRow
from mediagen.jobs.store import JobStore, NewMedia
from mediagen.jobs.validation import validate_generate
from mediagen.storage.s3 import S3Storage
from mediagen.v1 import media_generation_service_pb2 as pb
from tests.fixtures.processes import Cluster, free_port, wait_for_http
from tests.fixtures.s3 import make_s3_settings
from tests.support.metrics import parse

EXPIRED = 12
MODEL = "stability-ai/sdxl"
OLD = timedelta(days=2)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _seed(url: str, s3: S3Settings) -> tuple[set[str], list[str]]:
    """EXPIRED jobs that finished two days ago with an object each, one that finished now, and
    one running for two days; returns the ids of the two that must stay and every key."""
    storage = S3Storage(s3)
    await storage.start()
    db = Database(url)
    clock = Clock()
    store = JobStore(db, clock=clock)
    spec = validate_generate(
        pb.GenerateMediaRequest(prompt="a fox"), default_model=MODEL, allowed_models=(MODEL,)
    )
    now = clock.now
    keys: list[str] = []

    async def job(ago: timedelta, *, finish: bool) -> str:
        clock.now = now - ago
        job, _ = await store.create(spec, tenant="acme")
        assert await store.claim(job.id, "w", 30) is not None
        if finish:
            key = f"{job.id}/0.png"
            stored = await storage.put_stream(key, _chunks(b"old"), content_type="image/png")
            media = NewMedia(0, "image", "image/png", key, 8, 8, stored.size_bytes, "ab" * 32)
            await store.succeed(job.id, "w", [media])
            keys.append(key)
        return job.id

    try:
        for _ in range(EXPIRED):
            await job(OLD, finish=True)
        stay = {await job(timedelta(0), finish=True), await job(OLD, finish=False)}
        return stay, keys
    finally:
        await db.dispose()
        await storage.close()


async def _remaining(url: str, s3: S3Settings, keys: list[str]) -> tuple[set[str], list[str]]:
    """The job ids left in the database, and which of ``keys`` are left in the bucket."""
    db = Database(url)
    storage = S3Storage(s3)
    await storage.start()
    try:
        async with db.reading() as session:
            ids = set((await session.scalars(select(JobRow.id))).all())
        return ids, [key for key in keys if await storage.exists(key)]
    finally:
        await storage.close()
        await db.dispose()


def _deleted(ports: list[int], kind: str) -> float:
    return sum(
        parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text).value(
            "mediagen_retention_deleted_total", kind=kind
        )
        for port in ports
    )


def test_two_schedulers_share_the_backlog_and_delete_each_job_once(
    cluster: Cluster, postgres_url: str, s3_server: str
) -> None:
    s3 = make_s3_settings(s3_server)
    cluster.distributed(postgres_url, s3, token="r8_retention_test_token")
    stay, keys = asyncio.run(_seed(postgres_url, s3))
    cluster.env |= {
        "MEDIAGEN_RETENTION_DAYS": "1",
        "MEDIAGEN_RETENTION_BATCH_SIZE": "2",  # many small batches, for the two to share
        "MEDIAGEN_RETENTION_INTERVAL_S": "0.2",
    }
    ports = [free_port(), free_port()]
    schedulers = [
        cluster.start(f"scheduler-{n}", "scheduler", env={"MEDIAGEN_METRICS_PORT": str(port)})
        for n, port in enumerate(ports)
    ]
    for proc, port in zip(schedulers, ports, strict=True):
        wait_for_http(f"http://127.0.0.1:{port}/metrics", proc)

    deadline = time.monotonic() + 30
    while _deleted(ports, "jobs") < EXPIRED and time.monotonic() < deadline:
        time.sleep(0.1)

    assert _deleted(ports, "jobs") == EXPIRED
    assert _deleted(ports, "media") == EXPIRED
    ids, left = asyncio.run(_remaining(postgres_url, s3, keys))
    assert ids == stay
    assert len(left) == 1  # the recent job's
    logs = "".join(proc.output() for proc in schedulers)
    assert "retention every 0.2s: jobs finished 1 day(s) ago are deleted" in logs
    assert "Traceback" not in logs
