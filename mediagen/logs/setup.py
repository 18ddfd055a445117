"""Logging for a mediagen process: one handler on stderr, the same for every role.

Each record gets the log context (:class:`~mediagen.logs.context.ContextFilter`), then its
message redacted (:class:`~mediagen.redaction.RedactingFilter`, third-party loggers included),
then the configured format. Python warnings become log records too, so stderr holds nothing
but log lines. httpx's one line per request is DEBUG, not INFO: a worker polling predictions
would otherwise fill the INFO log with polls.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from mediagen.logs.context import ContextFilter
from mediagen.logs.formatting import formatter_for
from mediagen.redaction import RedactingFilter

#: Loggers whose INFO lines are per-request chatter, demoted to DEBUG.
CHATTY_LOGGERS = ("httpx",)


class DemoteToDebug(logging.Filter):
    """A logger filter that turns INFO records into DEBUG ones, dropped unless their logger is
    enabled for DEBUG (its level was checked, for INFO, before its filters run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """Send every log record of this process to ``stream`` (stderr) at ``level``."""
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter_for(log_format, tty=out.isatty()))
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=level, handlers=[handler])
    logging.captureWarnings(True)
    for name in CHATTY_LOGGERS:
        chatty = logging.getLogger(name)
        if not any(isinstance(f, DemoteToDebug) for f in chatty.filters):
            chatty.addFilter(DemoteToDebug())
