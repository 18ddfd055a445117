"""Every way the database can be unavailable reaches callers as Unavailable, never as a raw
driver error: real errors from a private PostgreSQL (stopped, crashed, flooded) and a real
SQLite file whose write lock another connection holds."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mediagen.errors import Unavailable
from mediagen.jobs import database as database_module
from mediagen.jobs.database import Database, Timeouts
from mediagen.jobs.migrate import upgrade
from mediagen.jobs.store import JobStore
from tests.fixtures.private_postgres import PrivatePostgres
from tests.jobs.test_store import spec


def sqlstates(exc: BaseException) -> set[str]:
    """Every SQLSTATE in the cause chain (what the server actually said)."""
    found: set[str] = set()
    error: BaseException | None = exc
    while error is not None:
        for candidate in (error, getattr(error, "orig", None)):
            state = getattr(candidate, "sqlstate", None)
            if isinstance(state, str):
                found.add(state)
        error = error.__cause__
    return found


@pytest.fixture
async def pg_store(private_postgres: PrivatePostgres) -> AsyncIterator[JobStore]:
    await upgrade(private_postgres.url)
    db = Database(private_postgres.url, pool_size=2, max_overflow=0)
    yield JobStore(db)
    await db.dispose()


async def test_refused_connection(private_postgres: PrivatePostgres, pg_store: JobStore) -> None:
    job, _ = await pg_store.create(spec(), tenant="t")
    private_postgres.stop("fast")
    with pytest.raises(Unavailable) as caught:
        await pg_store.get(job.id, tenant=None)
    assert caught.value.grpc_code.name == "UNAVAILABLE" and caught.value.retry_after_s > 0
    private_postgres.start()
    assert (await pg_store.get(job.id, tenant=None)).id == job.id  # the pool reconnects by itself


async def test_shutting_down_is_unavailable(private_postgres: PrivatePostgres) -> None:
    await upgrade(private_postgres.url)
    # A smart shutdown waits for this client; meanwhile the server refuses new connections
    # with 57P03 "the database system is shutting down" (which arrives as a plain DBAPIError).
    holder = await asyncpg.connect(private_postgres.dsn)
    try:
        private_postgres.stop("smart", wait=False)
        with pytest.raises(Unavailable) as caught:
            await _until_refused(private_postgres.url)
        assert "57P03" in sqlstates(caught.value)
    finally:
        await holder.close()


async def _until_refused(url: str) -> None:
    """Read until the server stops taking connections (pg_ctl -W returns before it does)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        db = Database(url)  # a fresh pool: every read makes a new connection
        try:
            await JobStore(db).list_jobs(tenant=None, limit=1)
        finally:
            await db.dispose()
        await asyncio.sleep(0.05)
    raise AssertionError("the server never started refusing")


async def test_too_many_clients_is_unavailable(private_postgres: PrivatePostgres) -> None:
    await upgrade(private_postgres.url)
    private_postgres.stop("fast")
    private_postgres.start(
        {"max_connections": "3", "superuser_reserved_connections": "0", "max_wal_senders": "0"}
    )
    held = [await asyncpg.connect(private_postgres.dsn) for _ in range(3)]
    db = Database(private_postgres.url)
    try:
        with pytest.raises(Unavailable) as caught:
            await JobStore(db).list_jobs(tenant=None, limit=1)
        assert "53300" in sqlstates(caught.value)
        assert "busy" in caught.value.message
    finally:
        await db.dispose()
        for conn in held:
            await conn.close()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_shutdown_during_a_transaction(
    private_postgres: PrivatePostgres, pg_store: JobStore, mode: str
) -> None:
    job, _ = await pg_store.create(spec(), tenant="t")
    with pytest.raises(Unavailable):
        async with pg_store.db.writing() as session:
            await session.execute(text("SELECT 1"))
            await asyncio.to_thread(private_postgres.stop, mode)
            await session.execute(text("SELECT 1"))
    with pytest.raises(Unavailable):
        await pg_store.get(job.id, tenant=None)
    private_postgres.start()
    assert (await pg_store.get(job.id, tenant=None)).id == job.id


async def test_connection_lost_mid_query(private_postgres: PrivatePostgres) -> None:
    db = Database(private_postgres.url)
    admin = await asyncpg.connect(private_postgres.dsn)
    try:

        async def slow_query() -> None:
            async with db.reading() as session:
                await session.execute(text("SELECT pg_sleep(30)"))

        task = asyncio.create_task(slow_query())
        pid = await _backend_running(admin, "pg_sleep")
        await admin.execute("SELECT pg_terminate_backend($1)", pid)  # 57P01, mid-statement
        with pytest.raises(Unavailable):
            await asyncio.wait_for(task, 10)
    finally:
        await admin.close()
        await db.dispose()


async def test_crash_of_another_backend(private_postgres: PrivatePostgres) -> None:
    """A backend killed with SIGKILL makes the server restart every session (57P02)."""
    db = Database(private_postgres.url)
    victim = await asyncpg.connect(private_postgres.dsn)
    try:
        victim_pid = await victim.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(Unavailable):
            async with db.reading() as session:
                await session.execute(text("SELECT 1"))
                os.kill(victim_pid, signal.SIGKILL)  # the backend runs as another local user
                await asyncio.sleep(1.0)
                await session.execute(text("SELECT 1"))
    finally:
        victim.terminate()
        await db.dispose()


async def _backend_running(admin: asyncpg.Connection, needle: str) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
            f"%{needle}%",
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no backend running {needle}")


async def test_sqlite_write_lock_held_elsewhere_fails_fast(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mediagen.db'}"
    await upgrade(url)
    db = Database(url, timeouts=Timeouts(lock_s=0.3))
    store = JobStore(db)
    job, _ = await store.create(spec(), tenant="t")
    other = sqlite3.connect(tmp_path / "mediagen.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write, left open
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await store.cancel(job.id, tenant=None)
        assert time.monotonic() - started < 5
        assert "busy" in caught.value.message
        with pytest.raises(Unavailable):  # the reconciler too: it logs and tries next pass
            await store.take_due(resend_after_s=0)
        assert time.monotonic() - started < 5
        assert (await store.get(job.id, tenant=None)).id == job.id  # reads go on (WAL)
        other.execute("ROLLBACK")
        canceled, _ = await store.cancel(job.id, tenant=None)
        assert canceled.status != job.status
    finally:
        other.close()
        await db.dispose()


async def test_real_errors_are_not_outages(database: Database) -> None:
    """A syntax error or a missing table is our bug, on either database: it stays a DBAPIError
    (INTERNAL for a caller), never a retryable Unavailable that would hide it."""
    for statement in ("SELEC 1", "SELECT * FROM no_such_table"):
        with pytest.raises(DBAPIError):  # an Unavailable here would not match
            async with database.reading() as session:
                await session.execute(text(statement))


async def test_a_connection_dropped_while_idle_is_replaced_unseen(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections in steady use are not pinged; one that sat idle is, so a connection the
    server dropped meanwhile (a restart, an idle timeout) costs the caller nothing."""
    monkeypatch.setattr(database_module, "IDLE_PING_S", 0.05)
    db = Database(postgres_url, pool_size=1, max_overflow=0)
    store = JobStore(db)
    try:
        job, _ = await store.create(spec(), tenant="t")
        async with db.reading() as session:
            pid = await session.scalar(text("SELECT pg_backend_pid()"))
        admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await asyncio.sleep(0.1)
        assert (await store.get(job.id, tenant=None)).id == job.id
        async with db.reading() as session:
            assert await session.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await db.dispose()
