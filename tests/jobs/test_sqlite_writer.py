"""SQLite's write connection on the loop's thread, against a real database file: concurrent
writers, a failing or cancelled one among them, another process holding the write lock, a
SIGKILL after the callers returned, and checkpoints."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from mediagen.errors import Unavailable
from mediagen.jobs import sqlite_writer
from mediagen.jobs.database import Database, Timeouts
from mediagen.jobs.migrate import upgrade
from mediagen.jobs.store import JobStore
from tests.jobs.test_store import spec

TENANT = "acme"
REQUEST_ID = "6f1c1d2e-0b5a-4c1e-9a59-3d9f1b7a2c10"


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated file, copied for each test: the migrations take a second a time."""
    path = tmp_path_factory.mktemp("template") / "mediagen.db"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def sqlite_path(migrated: Path, tmp_path: Path) -> Path:
    path = tmp_path / "mediagen.db"
    shutil.copyfile(migrated, path)
    return path


@pytest.fixture
async def db(sqlite_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{sqlite_path}", timeouts=Timeouts(lock_s=5))
    yield database
    await database.dispose()


def _count(path: Path, sql: str) -> int:
    """Counted on a connection of another kind (plain sqlite3): what is on disk, committed."""
    with sqlite3.connect(path) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def _insert_label(session_db: Database, name: str, *, fail: bool = False) -> None:
    async with session_db.writing() as session:
        await session.execute(
            text(
                "INSERT INTO model_stats (model, mean_run_s, samples, update_time) "
                "VALUES (:m, 1.0, 1, CURRENT_TIMESTAMP)"
            ),
            {"m": name},
        )
        if fail:
            raise ValueError(f"{name} fails after its insert")


async def test_concurrent_submissions_all_commit_and_are_visible(
    db: Database, sqlite_path: Path
) -> None:
    store = JobStore(db)
    jobs = await asyncio.gather(*(store.create(spec(), tenant=TENANT) for _ in range(200)))
    ids = {job.id for job, _ in jobs}
    assert len(ids) == 200
    assert _count(sqlite_path, "SELECT count(*) FROM jobs") == 200
    assert _count(sqlite_path, "SELECT count(*) FROM job_events") == 200
    for job_id in list(ids)[:5]:  # and through the store's own readers
        assert (await store.get(job_id, tenant=TENANT)).id == job_id


async def test_a_failing_writer_rolls_back_only_itself(db: Database, sqlite_path: Path) -> None:
    results = await asyncio.gather(
        *(_insert_label(db, f"model-{i}", fail=i == 7) for i in range(20)),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], ValueError)
    assert "model-7" in str(failed[0])
    assert _count(sqlite_path, "SELECT count(*) FROM model_stats") == 19
    assert _count(sqlite_path, "SELECT count(*) FROM model_stats WHERE model = 'model-7'") == 0


async def test_a_duplicate_request_id_is_answered_with_the_one_job(
    db: Database, sqlite_path: Path
) -> None:
    store = JobStore(db)
    answers = await asyncio.gather(
        *(store.create(spec(request_id=REQUEST_ID), tenant=TENANT) for _ in range(10))
    )
    assert len({job.id for job, _ in answers}) == 1
    assert sum(event is not None for _, event in answers) == 1  # one made it, nine found it
    assert _count(sqlite_path, "SELECT count(*) FROM jobs") == 1


async def test_a_caller_cancelled_mid_transaction_leaves_nothing_and_others_go_on(
    db: Database, sqlite_path: Path
) -> None:
    inserted = asyncio.Event()

    async def stuck() -> None:
        async with db.writing() as session:
            await session.execute(
                text(
                    "INSERT INTO model_stats (model, mean_run_s, samples, update_time) "
                    "VALUES ('stuck', 1.0, 1, CURRENT_TIMESTAMP)"
                )
            )
            inserted.set()
            await asyncio.Event().wait()  # holds the write connection until cancelled

    task = asyncio.create_task(stuck())
    await inserted.wait()
    waiting = [asyncio.create_task(_insert_label(db, f"after-{i}")) for i in range(5)]
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in waiting)  # one writer at a time: they wait their turn
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert _count(sqlite_path, "SELECT count(*) FROM model_stats WHERE model = 'stuck'") == 0
    assert _count(sqlite_path, "SELECT count(*) FROM model_stats") == 5


async def test_another_process_holding_the_write_lock_does_not_stall_the_loop(
    db: Database, sqlite_path: Path
) -> None:
    """The write waits (as SQLite's busy timeout would) while the loop keeps serving others,
    then goes through once the lock is released."""
    other = sqlite3.connect(sqlite_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.6, lambda: other.execute("ROLLBACK"))
    release.start()
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    try:
        started = time.monotonic()
        await _insert_label(db, "after-the-lock")
        waited = time.monotonic() - started
    finally:
        ticking.cancel()
        release.join()
        other.close()
    assert waited >= 0.5
    assert max(gaps) < 0.3  # a blocking busy handler would have frozen the loop ~0.6 s
    assert _count(sqlite_path, "SELECT count(*) FROM model_stats") == 1


async def test_a_write_cancelled_while_waiting_for_the_lock_writes_nothing(
    db: Database, sqlite_path: Path
) -> None:
    other = sqlite3.connect(sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        task = asyncio.create_task(_insert_label(db, "never"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        other.execute("ROLLBACK")
        other.close()
    await _insert_label(db, "later")  # the connection is still good
    assert _count(sqlite_path, "SELECT group_concat(model) = 'later' FROM model_stats") == 1


async def test_the_lock_held_past_the_timeout_is_unavailable(sqlite_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{sqlite_path}", timeouts=Timeouts(lock_s=0.3))
    other = sqlite3.connect(sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await _insert_label(db, "blocked")
        assert 0.25 <= time.monotonic() - started < 3
    finally:
        other.execute("ROLLBACK")
        other.close()
        await db.dispose()


_CHILD = """
import asyncio, sys, time
from mediagen.jobs.database import Database
from mediagen.jobs.store import JobStore
from tests.jobs.test_store import spec

async def main() -> None:
    db = Database(sys.argv[1])
    store = JobStore(db)
    jobs = await asyncio.gather(*(store.create(spec(), tenant="acme") for _ in range(50)))
    print(" ".join(job.id for job, _ in jobs), flush=True)
    time.sleep(60)  # killed here, its connections still open, nothing closed or checkpointed

asyncio.run(main())
"""


async def test_committed_rows_survive_a_sigkill(sqlite_path: Path) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        f"sqlite+aiosqlite:///{sqlite_path}",
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert child.stdout is not None
        ids = (await asyncio.wait_for(child.stdout.readline(), 60)).decode().split()
        assert len(ids) == 50
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    with sqlite3.connect(sqlite_path) as conn:
        found = {row[0] for row in conn.execute("SELECT id FROM jobs")}
    assert found == set(ids)


def _grows_past(path: Path, size: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while path.stat().st_size <= size:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def test_checkpoints_move_the_wal_into_the_database_file(
    sqlite_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Automatic checkpoints are off on the loop's connection; a thread does them instead,
    while the store is open (closing the last connection would checkpoint by itself)."""
    monkeypatch.setattr(sqlite_writer, "CHECKPOINT_EVERY", 10)
    db = Database(f"sqlite+aiosqlite:///{sqlite_path}")
    before = await asyncio.to_thread(lambda: sqlite_path.stat().st_size)
    try:
        store = JobStore(db)
        for _ in range(40):
            await store.create(spec("x" * 2000), tenant=TENANT)
        assert await asyncio.to_thread(_grows_past, sqlite_path, before, 10)
    finally:
        await db.dispose()
