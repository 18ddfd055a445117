"""What the PostgreSQL timeouts buy, on the machine's server: a row held by a stuck session (a
worker frozen mid-transaction looks exactly like the raw connection here) is skipped by the
reconciler at once, a write that needs it fails fast with a transient error instead of hanging,
and a session left idle in a transaction is ended by the server, releasing its locks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text, update

from mediagen.config import Settings
from mediagen.errors import Unavailable
from mediagen.jobs.database import Database, Timeouts
from mediagen.jobs.models import JobRow
from mediagen.jobs.store import JobStore, utcnow
from mediagen.v1 import job_pb2
from mediagen.wiring import open_core
from tests.fixtures.database import _raw, _truncate
from tests.jobs.test_outages import sqlstates
from tests.jobs.test_store import spec


@pytest.fixture
async def pg_url(postgres_url: str) -> str:
    await _truncate(postgres_url)
    return postgres_url


@pytest.fixture
async def stuck(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """Another session, for holding locks the way a frozen worker would."""
    conn = await asyncpg.connect(_raw(pg_url))
    yield conn
    await conn.close()


async def open_store(
    url: str, timeouts: Timeouts, clock: Callable[[], datetime] = utcnow
) -> JobStore:
    return JobStore(Database(url, timeouts=timeouts), clock=clock)


async def test_a_locked_row_is_skipped_and_a_write_on_it_fails_fast(
    pg_url: str, stuck: asyncpg.Connection
) -> None:
    now = [utcnow()]
    store = await open_store(pg_url, Timeouts(lock_s=0.5), clock=lambda: now[0])
    try:
        frozen, _ = await store.create(spec("frozen"), tenant="t")
        free, _ = await store.create(spec("free"), tenant="t")
        now[0] += timedelta(minutes=1)  # both due for a wake-up (resend_after_s=30 below)
        # A worker stopped right after its UPDATE: idle in transaction, holding the row.
        await stuck.execute("BEGIN")
        await stuck.execute("UPDATE jobs SET prediction_id = 'p' WHERE id = $1", frozen.id)

        started = time.monotonic()
        assert await store.take_due(resend_after_s=30) == [free.id]
        assert time.monotonic() - started < 0.5  # skipped, not waited on

        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await store.claim(frozen.id, "w", 30)
        assert time.monotonic() - started < 3
        assert "55P03" in sqlstates(caught.value)  # lock_not_available: transient

        await stuck.execute("ROLLBACK")
        assert await store.take_due(resend_after_s=30) == [frozen.id]  # free was just sent
        assert await store.claim(frozen.id, "w", 30) is not None
    finally:
        await store.db.dispose()


async def test_statement_timeout_ends_a_long_wait(pg_url: str, stuck: asyncpg.Connection) -> None:
    store = await open_store(pg_url, Timeouts(statement_s=0.3, lock_s=0))
    try:
        job, _ = await store.create(spec(), tenant="t")
        await stuck.execute("BEGIN")
        await stuck.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job.id)
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await store.cancel(job.id, tenant=None)
        assert time.monotonic() - started < 3
        assert "57014" in sqlstates(caught.value)  # query_canceled by statement_timeout
        await stuck.execute("ROLLBACK")
        canceled, _ = await store.cancel(job.id, tenant=None)
        assert canceled.status == job_pb2.JOB_STATE_CANCELED
    finally:
        await store.db.dispose()


async def test_idle_in_transaction_session_is_terminated(
    pg_url: str, stuck: asyncpg.Connection
) -> None:
    sleepy = await open_store(pg_url, Timeouts(idle_in_transaction_s=0.3))
    other = await open_store(pg_url, Timeouts(lock_s=5))
    try:
        job, _ = await sleepy.create(spec(), tenant="t")
        with pytest.raises(Unavailable):
            async with sleepy.db.writing() as session:
                await session.execute(
                    update(JobRow).where(JobRow.id == job.id).values(prediction_id="p")
                )
                pid = await session.scalar(text("SELECT pg_backend_pid()"))
                await asyncio.sleep(1.5)  # frozen inside the transaction
                gone = await stuck.fetchval(
                    "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1", pid
                )
                assert gone, "the server kept the idle-in-transaction session"
                # Its lock went with it: another session writes the row at once.
                started = time.monotonic()
                canceled, _ = await other.cancel(job.id, tenant=None)
                assert time.monotonic() - started < 2
                assert canceled.status == job_pb2.JOB_STATE_CANCELED
                await session.execute(text("SELECT 1"))  # the dead session: transient error
        # The terminated transaction was rolled back: its write never landed.
        assert await stuck.fetchval("SELECT prediction_id FROM jobs WHERE id = $1", job.id) is None
        assert (await other.get(job.id, tenant=None)).status == job_pb2.JOB_STATE_CANCELED
    finally:
        await sleepy.db.dispose()
        await other.db.dispose()


async def test_every_connection_carries_the_configured_timeouts(
    pg_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=pg_url,
        db_statement_timeout_s=12,
        db_lock_timeout_s=3,
        db_idle_in_transaction_timeout_s=45,
    )
    async with open_core(settings, worker=False) as core:
        for sessions in (core.db.reading, core.db.writing):
            async with sessions() as session:
                shown = [
                    await session.scalar(text(f"SHOW {name}"))
                    for name in (
                        "statement_timeout",
                        "lock_timeout",
                        "idle_in_transaction_session_timeout",
                    )
                ]
            assert shown == ["12s", "3s", "45s"]
