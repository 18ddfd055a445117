"""The outage table, for the driver errors a test cannot easily provoke for real (a deadlock, a
full disk, SQLite I/O errors); tests/jobs/test_outages.py provokes the rest on real servers."""

from __future__ import annotations

import sqlite3

import asyncpg.exceptions as pg
import pytest
from sqlalchemy.exc import DBAPIError

from mediagen.jobs.outages import Outage, classify


def wrapped(error: Exception) -> DBAPIError:
    """As SQLAlchemy raises it: the driver error as ``orig`` and as the cause."""
    try:
        raise DBAPIError("statement", {}, error) from error
    except DBAPIError as exc:
        return exc


def sqlite_error(code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(f"sqlite error {code}")
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (pg.DeadlockDetectedError("deadlock"), Outage.BUSY),
        (pg.SerializationError("serialize"), Outage.BUSY),
        (pg.TooManyConnectionsError("too many"), Outage.BUSY),
        (pg.LockNotAvailableError("lock timeout"), Outage.BUSY),
        (pg.QueryCanceledError("statement timeout"), Outage.BUSY),
        (pg.DiskFullError("disk full"), Outage.DOWN),
        (pg.IdleInTransactionSessionTimeoutError("idle"), Outage.DOWN),
        (pg.ConnectionDoesNotExistError("closed mid-query"), Outage.DOWN),
        (pg.CrashShutdownError("crash"), Outage.DOWN),
        (sqlite_error(5), Outage.BUSY),  # SQLITE_BUSY
        (sqlite_error(517), Outage.BUSY),  # SQLITE_BUSY_SNAPSHOT (extended code)
        (sqlite_error(10), Outage.DOWN),  # SQLITE_IOERR
        (sqlite_error(13), Outage.DOWN),  # SQLITE_FULL
        (ConnectionRefusedError(111, "refused"), Outage.DOWN),
        (TimeoutError("connect timed out"), Outage.DOWN),
        # Our errors, and the caller's, are not outages.
        (pg.UniqueViolationError("duplicate"), None),
        (pg.PostgresSyntaxError("syntax"), None),
        (pg.InvalidTextRepresentationError("bad uuid"), None),
        (sqlite_error(1), None),  # SQLITE_ERROR: a syntax error or a missing table
        (sqlite_error(19), None),  # SQLITE_CONSTRAINT
        (ValueError("a bug"), None),
    ],
)
def test_classify(error: Exception, outage: Outage | None) -> None:
    assert classify(error) is outage
    assert classify(wrapped(error)) is outage


def test_an_error_raised_while_handling_an_outage_is_not_one() -> None:
    try:
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError:
            raise ValueError("a bug in the handler")  # noqa: B904 (the point of the test)
    except ValueError as exc:
        assert classify(exc) is None
