"""Database connections: one place that knows SQLite from PostgreSQL.

SQLite (embedded) allows one writer at a time. Write transactions therefore start with
``BEGIN IMMEDIATE`` on a single pooled connection, run on the loop's thread
(:mod:`mediagen.jobs.sqlite_writer`): writers take turns instead of failing with "database is
locked" when a read snapshot goes stale, and readers keep their own pool of aiosqlite threads
(WAL mode lets them read while a write is in progress). PostgreSQL uses one pool for both, each
connection with the :class:`Timeouts` set server-side.

Outages (the server down or busy; see :mod:`mediagen.jobs.outages`) become
:class:`mediagen.errors.Unavailable` here and nowhere else.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from mediagen.errors import Unavailable
from mediagen.jobs import sqlite_writer
from mediagen.jobs.outages import Outage, classify


@dataclass(frozen=True)
class Timeouts:
    """Limits that keep one stuck session from holding the store hostage; 0 turns one off.

    ``statement_s`` bounds any statement (PostgreSQL); ``lock_s`` bounds a wait for a lock
    (PostgreSQL's lock_timeout, SQLite's busy timeout); ``idle_in_transaction_s`` makes
    PostgreSQL end a session left idle inside a transaction (a frozen process), freeing its locks.
    """

    statement_s: float = 30.0
    lock_s: float = 5.0
    # Every transaction here is a few statements sent back to back, so one idle this long
    # belongs to a process that stopped (SIGSTOP, a frozen VM) mid-transaction.
    idle_in_transaction_s: float = 10.0

    def postgres_settings(self) -> dict[str, str]:
        """asyncpg ``server_settings``: set once per connection, in milliseconds."""
        return {
            "statement_timeout": _ms(self.statement_s),
            "lock_timeout": _ms(self.lock_s),
            "idle_in_transaction_session_timeout": _ms(self.idle_in_transaction_s),
        }


def _ms(seconds: float) -> str:
    # PostgreSQL reads 0 as "off": keep a tiny positive value from rounding down to it.
    return str(max(1, round(seconds * 1000)) if seconds > 0 else 0)


_SQLITE_NO_LIMIT_S = 86_400.0


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_read_engine(url: str, *, pool_size: int, busy_timeout_s: float) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=60,
        connect_args={"timeout": busy_timeout_s},
    )
    busy_ms = round(busy_timeout_s * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so "begin" below decides how each starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    _begin_with(engine, "BEGIN")
    return engine


def _sqlite_write_engine(url: str, path: str, *, busy_timeout_s: float) -> AsyncEngine:
    engine = create_async_engine(
        url,
        async_creator=functools.partial(sqlite_writer.connect, path, busy_timeout_s=busy_timeout_s),
        pool_size=1,
        max_overflow=0,
        pool_timeout=60,
    )
    _begin_with(engine, "BEGIN IMMEDIATE")
    return engine


def _begin_with(engine: AsyncEngine, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)


#: A pooled PostgreSQL connection unused this long is pinged before it is handed out (the server
#: may have restarted meanwhile); one in steady use is not: that ping was a round trip per call.
IDLE_PING_S = 1.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool drops this connection and hands out a new one (or the connect fails).
            raise DisconnectionError("connection lost while idle") from exc


class Database:
    """Sessions for reading and for writing, over SQLite or PostgreSQL."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 20,
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        self.url = url
        self.timeouts = timeouts
        #: PostgreSQL rather than SQLite (which lacks, e.g., data-modifying CTEs).
        self.postgres = not _is_sqlite(url)
        if not self.postgres:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # SQLite has no "wait forever" and reads 0 as "never wait": "off" becomes a day.
            busy_s = timeouts.lock_s if timeouts.lock_s > 0 else _SQLITE_NO_LIMIT_S
            self._write_engine = _sqlite_write_engine(url, path, busy_timeout_s=busy_s)
            self._read_engine = _sqlite_read_engine(url, pool_size=pool_size, busy_timeout_s=busy_s)
        else:
            engine = create_async_engine(
                url,
                # Every connection opened is kept (up to the same total): QueuePool closes an
                # overflow connection on its return, and opened one anew in each burst.
                pool_size=pool_size + max_overflow,
                max_overflow=0,
                connect_args={"server_settings": timeouts.postgres_settings()},
            )
            _ping_when_idle(engine)
            self._write_engine = self._read_engine = engine
        self._writer = async_sessionmaker(self._write_engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self._read_engine, expire_on_commit=False)
        # PostgreSQL commits a lone statement by itself: without the BEGIN and COMMIT round
        # trips of a transaction around it (see :meth:`autocommit`).
        self._autocommit_engine = (
            None
            if not self.postgres
            else self._write_engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        async with _translated():
            if self.postgres:
                async with self._writer() as session, session.begin():
                    yield session
                return
            # SQLite's writes run inline (:mod:`sqlite_writer`). Closed directly, not by ``async
            # with``: SQLAlchemy runs that close in a task of its own (so a cancellation cannot
            # cut it short), a turn of the loop during which the one write connection stays
            # checked out and every other writer waits. Inline, the close never yields, so
            # nothing can cut it short.
            session = self._writer()
            try:
                async with session.begin():
                    yield session
            finally:
                await session.close()

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection for a write of ONE statement, atomic by itself. PostgreSQL: it
        commits as it runs, with no transaction (no BEGIN and COMMIT round trips) and no ORM
        session around it. SQLite: the connection of a :meth:`writing` transaction (its single
        writer), committed when the block ends."""
        if self._autocommit_engine is None:  # SQLite
            async with self.writing() as session:
                yield await session.connection()
            return
        async with _translated(), self._autocommit_engine.connect() as connection:
            yield connection

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A read-only session."""
        async with _translated(), self._reader() as session:
            yield session

    async def ping(self) -> None:
        """``SELECT 1`` on a pooled connection (health); Unavailable if the server is not there."""
        async with self.reading() as session:
            await session.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self._write_engine.dispose()
        if self._read_engine is not self._write_engine:
            await self._read_engine.dispose()


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    """The one place database failures become :class:`Unavailable` (retryable, UNAVAILABLE);
    anything :func:`classify` does not call an outage passes through unchanged."""
    try:
        yield
    except Exception as exc:
        outage = classify(exc)
        if outage is Outage.BUSY:
            raise Unavailable("database is busy; retry", retry_after_s=1.0) from exc
        if outage is Outage.DOWN:
            raise Unavailable("database unavailable", retry_after_s=2.0) from exc
        raise
