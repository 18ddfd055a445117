"""Which database errors mean "the database cannot serve us right now; retry", and which are ours.

Pure: :func:`classify` looks at an exception and its causes and answers :attr:`Outage.DOWN` (the
server is shutting down, restarting, refusing or dropped the connection), :attr:`Outage.BUSY`
(a lock or statement timeout, too many clients, SQLite's write lock held elsewhere) or None (a
real error: a constraint, a bug). PostgreSQL errors are recognised by SQLSTATE and SQLite ones
by result code, never by message text, which changes with the server's version and locale.
:mod:`mediagen.jobs.database` is the one place that acts on the answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeout


class Outage(Enum):
    #: Unreachable: refused, lost, shutting down or starting up. Retry in a couple of seconds.
    DOWN = "down"
    #: Up but contended: a lock or statement timeout, no free connection. Retry soon.
    BUSY = "busy"


#: SQLSTATE classes (the first two characters) in which every code is an outage.
_PG_CLASSES = {
    "08": Outage.DOWN,  # connection exception (asyncpg's "connection closed mid-query" is 08003)
    "53": Outage.DOWN,  # insufficient resources: disk full, out of memory, too many clients
}
#: Single SQLSTATEs; these override the class table above.
_PG_CODES = {
    "57P01": Outage.DOWN,  # admin_shutdown: `pg_ctl stop -m fast`, pg_terminate_backend
    "57P02": Outage.DOWN,  # crash_shutdown: another backend crashed, or `-m immediate`
    "57P03": Outage.DOWN,  # cannot_connect_now: "the database system is shutting down"
    "57P05": Outage.DOWN,  # idle_session_timeout
    "25P03": Outage.DOWN,  # idle_in_transaction_session_timeout: our session was cut off
    "53300": Outage.BUSY,  # too_many_connections
    "53400": Outage.BUSY,  # configuration_limit_exceeded
    "55P03": Outage.BUSY,  # lock_not_available: lock_timeout (or NOWAIT)
    "57014": Outage.BUSY,  # query_canceled: statement_timeout (or pg_cancel_backend)
    "40001": Outage.BUSY,  # serialization_failure
    "40P01": Outage.BUSY,  # deadlock_detected: the other transaction went through
}

#: SQLite primary result codes (the low byte of the extended code).
_SQLITE_CODES = {
    5: Outage.BUSY,  # SQLITE_BUSY: "database is locked" (another connection's write lock)
    6: Outage.BUSY,  # SQLITE_LOCKED: a conflicting lock within the same connection
    7: Outage.DOWN,  # SQLITE_NOMEM
    10: Outage.DOWN,  # SQLITE_IOERR: the disk or file system failed
    13: Outage.DOWN,  # SQLITE_FULL: the disk is full
    14: Outage.DOWN,  # SQLITE_CANTOPEN: the file (or its directory) cannot be opened
    15: Outage.DOWN,  # SQLITE_PROTOCOL: a locking race in WAL recovery
}


def classify(exc: BaseException) -> Outage | None:
    """The outage ``exc`` (or anything in its cause chain) reports, or None for a real error."""
    for error in _chain(exc):
        outage = _classify_one(error)
        if outage is not None:
            return outage
    return None


def _classify_one(error: BaseException) -> Outage | None:
    if isinstance(error, PoolTimeout):
        return Outage.BUSY  # every pooled connection is in use
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return Outage.DOWN  # SQLAlchemy saw the connection die
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        return _PG_CODES.get(sqlstate) or _PG_CLASSES.get(sqlstate[:2])
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE_CODES.get(code & 0xFF)
    if isinstance(error, OSError):  # TimeoutError included
        return Outage.DOWN  # refused, reset, unreachable, or a connect that timed out
    if isinstance(error, SAInterfaceError):
        return Outage.DOWN  # the driver's connection is closed (asyncpg: "connection is closed")
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, SQLAlchemy's wrapped driver error, and their causes, each once."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        error = todo.pop(0)
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        orig = getattr(error, "orig", None)
        # Causes only, not __context__: an error raised while handling another is not its cause.
        for nxt in (orig, error.__cause__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
