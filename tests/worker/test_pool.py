"""Many jobs in flight in one worker over a small connection pool: calls wait for a connection
slot, none fails with PoolTimeout. Real store (PostgreSQL), the emulator through the official
client, in-memory storage; one attempt per job, so any transient failure would fail its job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from mediagen.config import Settings
from mediagen.emulator import Delay, Route
from mediagen.events.bus import InProcessBus
from mediagen.jobs.database import Database
from mediagen.jobs.store import JobStore
from mediagen.jobs.validation import validate_generate
from mediagen.providers.rates import Rates
from mediagen.providers.replicate import ReplicateProvider
from mediagen.storage.memory import MemoryStorage
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.worker.runner import JobRunner
from tests.fixtures.database import _truncate
from tests.fixtures.emulator import EmulatorFactory, predictions_by_marker, wait_until

MODEL = "stability-ai/sdxl"
JOBS = 100
SETTINGS = Settings(
    worker_concurrency=JOBS,
    max_attempts=1,
    poll_interval_s=0.5,  # a poll or two per job: the loop also serves the emulator
    poll_interval_max_s=1.0,
    # The pool, not the budget, is under test here.
    provider_creates_per_min=0,
    provider_requests_per_min=0,
)


@pytest_asyncio.fixture
async def store(postgres_url: str) -> AsyncIterator[JobStore]:
    await _truncate(postgres_url)
    db = Database(postgres_url, pool_size=10, max_overflow=10)
    yield JobStore(db)
    await db.dispose()


async def test_100_jobs_in_flight_over_4_connections(
    store: JobStore, emulator_factory: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = await emulator_factory(
        latency_s=0.3, progress_steps=1, limits=Rates(creates_per_min=0, requests_per_min=0)
    )
    # Each API call holds its connection 50 ms: 4 connections answer 80 calls a second.
    for route in (Route.CREATE, Route.GET):
        emulator.emulator.inject(Delay(route=route, delay_s=0.05, times=None))
    provider = ReplicateProvider(
        api_token="t",
        base_url=emulator.base_url,
        output_hosts=(emulator.host_port,),
        webhook_url="http://127.0.0.1:9/webhooks/replicate",  # only a marker
        max_connections=4,
        download_connections=JOBS,  # one per job, as from_settings sizes it
        # Far shorter than the queue for 4 connections: waiting in httpx's pool would fail.
        pool_timeout_s=0.05,
    )
    runner = JobRunner(
        SETTINGS, store, InProcessBus(), provider, MemoryStorage(), requeue=_no_requeue
    )
    try:
        spec = validate_generate(
            pb.GenerateMediaRequest(prompt="a crowded harbour"),
            default_model=MODEL,
            allowed_models=(MODEL,),
        )
        jobs = [(await store.create(spec, tenant="t"))[0].id for _ in range(JOBS)]
        await asyncio.gather(*(runner.handle(job_id) for job_id in jobs))
        done = await wait_until(
            lambda: asyncio.gather(*(store.get(job_id, tenant=None) for job_id in jobs)),
            lambda found: True,
        )
    finally:
        await runner.drain(1.0)
        await provider.close()

    failed = [j.error.message for j in done if j.status != job_pb2.JOB_STATE_SUCCEEDED]
    assert failed == []
    # Not even a poll failed (the runner tolerates a few in a row, and would say so).
    assert [r.getMessage() for r in caplog.records if "PoolTimeout" in r.getMessage()] == []
    assert await predictions_by_marker(emulator.base_url) == dict.fromkeys(jobs, 1)


async def _no_requeue(job_id: str) -> None:
    raise AssertionError(f"job {job_id} was sent back for a retry")
