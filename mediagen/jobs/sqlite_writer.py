"""SQLite's one write connection, run on the event loop's own thread.

aiosqlite runs each statement on a thread of its own, a hop there and back per statement. A
write transaction held SQLite's write lock (and the one write connection) across all its hops,
each of which waited for a turn of a busy loop, so in ``serve`` the API's writes queued behind
the worker's (issue 10). SQLite itself does such a write in microseconds (WAL with
``synchronous=NORMAL``: a commit appends to the WAL file and does not fsync), so here statements
run inline: a write transaction, BEGIN IMMEDIATE to COMMIT, runs within one step of the loop, and
the next writer finds the connection free. Readers keep aiosqlite's threads (:mod:`database`):
a long read must not stall the loop, and WAL lets them read while this writes.

Neither of the two slow things SQLite may do while writing blocks the loop:

- **Another process's write lock.** SQLite's busy handler would sleep in C on this thread, so its
  timeout is 0 and a statement refused with SQLITE_BUSY is retried here, sleeping in asyncio,
  until the configured timeout; then the same "database is locked" error is raised as before.
- **Checkpoints.** The connection that commits copies the WAL back into the database, with an
  fsync, every 1000 pages; here automatic checkpoints are off and a passive checkpoint runs on a
  thread (on a connection of its own) after every :data:`CHECKPOINT_EVERY` commits.

The classes have the shape SQLAlchemy's aiosqlite dialect expects of an aiosqlite connection
(``create_async_engine(..., async_creator=connect)``), so sessions and the dialect are unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

#: Commits between two checkpoints: a few pages each, so about SQLite's own 1000-page default.
CHECKPOINT_EVERY = 200
#: The longest sleep between two tries of a statement refused with SQLITE_BUSY.
_BUSY_MAX_SLEEP_S = 0.05

_T = TypeVar("_T")

log = logging.getLogger(__name__)


async def connect(path: str, *, busy_timeout_s: float) -> InlineConnection:
    """Open ``path`` for writing (WAL, foreign keys on, transactions left to the caller)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    connection = InlineConnection(conn, path, busy_timeout_s=busy_timeout_s)
    try:
        for pragma in (
            "journal_mode=WAL",  # waits for the write lock, like any write
            "foreign_keys=ON",
            "synchronous=NORMAL",
            "wal_autocheckpoint=0",
        ):
            await connection.unlocked(conn.execute, f"PRAGMA {pragma}")
    except BaseException:
        connection.stop()
        raise
    return connection


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


class InlineConnection:
    """An aiosqlite-shaped connection whose coroutines run SQLite at once, on this thread."""

    def __init__(self, conn: sqlite3.Connection, path: str, *, busy_timeout_s: float) -> None:
        self._connection: sqlite3.Connection | None = conn
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._commits = 0
        self._checkpoint: asyncio.Task[None] | None = None

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")  # what aiosqlite says; the dialect knows it
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    async def unlocked(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)``, tried again while another connection holds the write lock, for up to
        the busy timeout (SQLite leaves a refused statement as if never run)."""
        deadline: float | None = None
        sleep_s = 0.001
        while True:
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self._busy_timeout_s
                if now >= deadline:
                    raise
                await asyncio.sleep(min(sleep_s, deadline - now))
                sleep_s = min(sleep_s * 2, _BUSY_MAX_SLEEP_S)

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def commit(self) -> None:
        await self.unlocked(self._conn.commit)
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY and (
            self._checkpoint is None or self._checkpoint.done()
        ):
            self._commits = 0
            self._checkpoint = asyncio.create_task(asyncio.to_thread(_checkpoint, self._path))

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):
                await self._checkpoint

    def stop(self) -> None:
        """Close now (SQLAlchemy's terminate): there is no thread to stop."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _checkpoint(path: str) -> None:
    """Copy committed WAL pages into the database file, without waiting for readers or the
    writer (PASSIVE): pages a reader still needs wait for the next one."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        # Nothing is lost: the WAL holds every commit, and the next checkpoint tries again.
        log.warning("SQLite checkpoint failed (%s); the WAL grows until one succeeds", exc)


class InlineCursor:
    """An aiosqlite-shaped cursor over the connection's sqlite3 cursor."""

    def __init__(self, connection: InlineConnection) -> None:
        self._connection = connection
        self._cursor = connection._conn.cursor()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        await self._connection.unlocked(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        # Materialised: a retry after SQLITE_BUSY must see every row again.
        rows = list(parameters)
        await self._connection.unlocked(self._cursor.executemany, sql, rows)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> Sequence[Any]:
        return self._cursor.fetchall()

    async def setinputsizes(self, *_sizes: Any) -> None:
        pass  # sqlite3 has no input sizes

    async def close(self) -> None:
        self._cursor.close()
