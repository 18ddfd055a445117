"""What a log line is about: the request id, job, tenant and attempt of the work in progress.

One context variable holds an immutable :class:`LogContext`; :func:`bound` replaces it for the
duration of a block (an RPC, a job attempt), so everything awaited inside — provider and storage
calls, third-party loggers — logs with it, and concurrent tasks never see each other's.
:class:`ContextFilter` stamps it onto every record a handler receives.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from dataclasses import dataclass

#: The record attributes (and JSON keys) the context is written to, in output order.
FIELDS = ("request_id", "job_id", "tenant", "attempt")


@dataclass(frozen=True)
class LogContext:
    """Each field None while unknown."""

    request_id: str | None = None
    job_id: str | None = None
    tenant: str | None = None
    attempt: int | None = None


_current: contextvars.ContextVar[LogContext] = contextvars.ContextVar(
    "mediagen_log_context",
    default=LogContext(),  # noqa: B039 (frozen: never changed, only replaced)
)


def current() -> LogContext:
    return _current.get()


@contextlib.contextmanager
def bound(
    *,
    request_id: str | None = None,
    job_id: str | None = None,
    tenant: str | None = None,
    attempt: int | None = None,
) -> Iterator[LogContext]:
    """The current context with the given fields set (None keeps what is there) inside the
    block."""
    was = _current.get()
    context = LogContext(
        request_id=request_id if request_id is not None else was.request_id,
        job_id=job_id if job_id is not None else was.job_id,
        tenant=tenant if tenant is not None else was.tenant,
        attempt=attempt if attempt is not None else was.attempt,
    )
    token = _current.set(context)
    try:
        yield context
    finally:
        # A streaming call's generator abandoned mid-stream is closed later from another
        # context (asyncio's async-generator finalizer), where there is nothing to restore.
        with contextlib.suppress(ValueError):
            _current.reset(token)


class ContextFilter(logging.Filter):
    """A handler filter that copies the known context fields onto each record (a field passed
    with ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        for name in FIELDS:
            value = getattr(context, name)
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True
