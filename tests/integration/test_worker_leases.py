"""Issue 8 (parts 1 and 3), in one process: the embedded service's real runner, store (SQLite),
storage and emulator. A claim is never stranded by a failed queue ack; the log tells the truth
about leases (one warning naming the new owner when one is stolen, none after a normal finish,
no "Task exception was never retrieved"), and a job handed back at shutdown is one INFO line."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import update

from mediagen.embedded import Embedded
from mediagen.jobs.database import Database
from mediagen.jobs.models import JobRow
from mediagen.jobs.store import utcnow
from mediagen.jobs.validation import validate_generate
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.embedded import embedded_settings
from tests.fixtures.emulator import small_request, wait_until

Start = Callable[..., Awaitable[Embedded]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    started: list[Embedded] = []

    async def run(**overrides: Any) -> Embedded:
        app = Embedded(embedded_settings(tmp_path / f"data{len(started)}", **overrides))
        await app.start()
        started.append(app)
        return app

    yield run
    for app in started:
        await app.stop()


async def job_of(app: Embedded, job_id: str) -> job_pb2.Job:
    assert app.core is not None
    return await app.core.store.get(job_id, tenant=None)


async def row_of(db: Database, job_id: str) -> JobRow:
    """The job's row: its lease and prediction, which the API does not show."""
    async with db.reading() as session:
        row = await session.get(JobRow, job_id)
    assert row is not None
    return row


async def predicting(app: Embedded, job_id: str) -> None:
    """Until a worker runs the job and has stored its prediction id."""
    assert app.core is not None
    db = app.core.db
    await wait_until(
        lambda: row_of(db, job_id),
        lambda r: r.status == "running" and r.prediction_id is not None,
        timeout_s=10,
    )


def lease_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "lease lost" in r.getMessage()
    ]


async def test_a_failed_ack_after_the_claim_does_not_strand_the_job(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    # A long lease: a stranded claim would sit RUNNING for 60 s before anyone took it again.
    app = await start(lease_s=60.0)
    assert app.core is not None and app.runner is not None
    settings = app.settings
    spec = validate_generate(
        small_request("acked in vain"),
        default_model=settings.default_model,
        allowed_models=settings.models,
    )
    # Inserted as GenerateMedia does, but not enqueued: the test delivers the wake-up itself,
    # through the runner's queue seam, with an ack that fails as Redis's does when it is down.
    job, _ = await app.core.store.create(spec, tenant="default")
    acks: list[float] = []

    async def failing_ack() -> None:
        acks.append(time.monotonic())
        raise ConnectionError("Connection refused (the queue is down)")

    caplog.set_level(logging.INFO, logger="mediagen")
    began = time.monotonic()
    await asyncio.wait_for(app.runner.handle(job.id, failing_ack), timeout=30)
    finished = await job_of(app, job.id)
    assert finished.status == job_pb2.JOB_STATE_SUCCEEDED, finished
    assert finished.attempt == 1 and len(finished.media) == 1
    assert len(acks) == 1
    assert time.monotonic() - began < 15  # promptly, not after the 60 s lease
    assert any("queue ack failed" in r.getMessage() for r in caplog.records)


async def test_a_stolen_lease_is_one_warning_naming_the_new_owner(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    app = await start(lease_s=1.5)
    assert app.core is not None
    store = app.core.store
    caplog.set_level(logging.INFO, logger="mediagen")
    async with grpc.aio.insecure_channel(app.grpc_target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        job = (await stub.GenerateMedia(small_request("stolen", latency_s=8.0))).job
        await predicting(app, job.id)
        # Another worker takes the job, exactly as after a lease expiry: the lease is made to
        # expire, and the other worker's claim goes through the store's own conditional UPDATE.
        thief = None
        deadline = time.monotonic() + 10
        while thief is None and time.monotonic() < deadline:
            async with app.core.db.writing() as session:
                await session.execute(
                    update(JobRow)
                    .where(JobRow.id == job.id)
                    .values(lease_expires_at=utcnow() - timedelta(seconds=1))
                )
            thief = await store.claim(job.id, "other-host:4242:thief", 60)
        assert thief is not None, "the lease was renewed before every steal"

        # The runner notices at its next renewal (every 0.5 s) and stops touching the job.
        async def warned() -> list[str]:
            return lease_warnings(caplog)

        await wait_until(warned, bool, timeout_s=10)
        await asyncio.sleep(2)  # several renewal periods: any second warning would be here
        gc.collect()  # an exception never retrieved is reported when its task is collected
    warnings = lease_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert f"job={job.id}" in warnings[0] and "held by other-host:4242:thief" in warnings[0]
    after = await row_of(app.core.db, job.id)
    # The thief's, untouched since: this worker wrote nothing after losing it.
    assert (after.status, after.lease_owner, after.attempt) == (
        "running",
        "other-host:4242:thief",
        2,
    )
    assert "never retrieved" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text


async def test_no_lease_warning_for_jobs_that_finish_normally(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    # Renewals every 0.2 s, beside every job's final write: a renewal racing the job's own
    # end must not report the lease lost.
    app = await start(lease_s=0.6)
    caplog.set_level(logging.INFO, logger="mediagen")
    async with grpc.aio.insecure_channel(app.grpc_target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        jobs = [(await stub.GenerateMedia(small_request(f"quick {i}", 0.6))).job for i in range(12)]
        for job in jobs:
            await wait_until(
                lambda job=job: job_of(app, job.id),  # type: ignore[misc]
                lambda j: j.status == job_pb2.JOB_STATE_SUCCEEDED,
                timeout_s=30,
                interval_s=0.1,
            )
    gc.collect()
    assert lease_warnings(caplog) == []
    assert "never retrieved" not in caplog.text


async def test_a_job_handed_back_at_shutdown_is_one_info_line(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    app = await start(shutdown_grace_s=0.5)
    caplog.set_level(logging.INFO)
    async with grpc.aio.insecure_channel(app.grpc_target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        job = (await stub.GenerateMedia(small_request("too slow to wait for", latency_s=10))).job
        await predicting(app, job.id)
    began = time.monotonic()
    await app.stop()
    assert time.monotonic() - began < 5  # the grace (0.5 s) and the hand-back, not the job
    handed_back = [r for r in caplog.records if "running→pending (worker stopping)" in r.message]
    assert [(r.levelno, f"job={job.id}" in r.message) for r in handed_back] == [
        (logging.INFO, True)
    ]
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "CancelledError" not in caplog.text and "Traceback" not in caplog.text
    # Handed back for the next worker, keeping its prediction to resume.
    db = Database(app.settings.effective_database_url)
    try:
        back = await row_of(db, job.id)
    finally:
        await db.dispose()
    assert (back.status, back.lease_owner) == ("pending", None) and back.prediction_id
