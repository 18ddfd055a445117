"""Database connections: one place that knows SQLite from PostgreSQL.

SQLite (embedded) allows one writer at a time. Write transactions therefore start with
``BEGIN IMMEDIATE`` on a single pooled connection: writers queue in the pool instead of failing
with "database is locked" when a read snapshot goes stale, and readers keep their own pool
(WAL mode lets them read while a write is in progress). PostgreSQL uses one pool for both.

Connection failures become :class:`mediagen.errors.Unavailable` here and nowhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from mediagen.errors import Unavailable

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Every transaction here is a few statements sent back to back, so one left open and idle this
#: long belongs to a process that stopped (SIGSTOP, a frozen VM) mid-transaction: PostgreSQL
#: ends that session, and the row locks it held stop stalling every other process's claims and
#: the reconciler.
POSTGRES_SESSION_SETTINGS = {"idle_in_transaction_session_timeout": "10000"}  # ms


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_engine(url: str, *, begin: str, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=0, pool_timeout=60, connect_args={"timeout": 30}
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so "begin" below decides how each starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


def _is_connection_error(exc: DBAPIError) -> bool:
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, OperationalError):
        text_ = str(exc.orig).lower()
        return any(
            marker in text_
            for marker in (
                "connect",
                "connection",
                "closed",
                "terminat",
                "locked",
                "timeout",
                "too many",
                "shutting down",
            )
        )
    return False


class Database:
    """Sessions for reading and for writing, over SQLite or PostgreSQL."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20) -> None:
        self.url = url
        if _is_sqlite(url):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._write_engine = _sqlite_engine(url, begin="BEGIN IMMEDIATE", pool_size=1)
            self._read_engine = _sqlite_engine(url, begin="BEGIN", pool_size=pool_size)
        else:
            engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_pre_ping=True,
                connect_args={"server_settings": POSTGRES_SESSION_SETTINGS},
            )
            self._write_engine = self._read_engine = engine
        self._writer = async_sessionmaker(self._write_engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self._read_engine, expire_on_commit=False)

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        async with _translated(), self._writer() as session, session.begin():
            yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A read-only session."""
        async with _translated(), self._reader() as session:
            yield session

    async def dispose(self) -> None:
        await self._write_engine.dispose()
        if self._read_engine is not self._write_engine:
            await self._read_engine.dispose()


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except PoolTimeout as exc:
        raise Unavailable("database is busy; retry", retry_after_s=1.0) from exc
    except DBAPIError as exc:
        if _is_connection_error(exc):
            raise Unavailable("database unavailable", retry_after_s=2.0) from exc
        raise
    except OSError as exc:  # asyncpg raises plain OSErrors when it cannot connect
        raise Unavailable("database unavailable", retry_after_s=2.0) from exc
