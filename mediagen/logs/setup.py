"""Logging for a mediagen process: one handler on stderr, the same for every role.

Each record gets the log context (:class:`~mediagen.logs.context.ContextFilter`), then its
message redacted (:class:`~mediagen.redaction.RedactingFilter`, third-party loggers included),
then the configured format. Python warnings become log records too (JSON lines like the rest).
httpx's line per request and taskiq's line per queue message are DEBUG, not INFO: a worker
polling predictions would otherwise fill the INFO log with polls, and the worker's own lines
say what each message led to.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from mediagen.logs.context import ContextFilter
from mediagen.logs.formatting import formatter_for
from mediagen.redaction import RedactingFilter

#: Loggers whose INFO lines are per-request (per-message) chatter, demoted to DEBUG. Exact
#: names: a logger's filters see only its own records, not its children's.
CHATTY_LOGGERS = ("httpx", "taskiq.receiver.receiver")


class DemoteToDebug(logging.Filter):
    """A logger filter that turns INFO records into DEBUG ones, dropped unless their logger is
    enabled for DEBUG (its level was checked, for INFO, before its filters run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def build_handler(log_format: str, stream: TextIO) -> logging.Handler:
    """A handler writing to ``stream`` in ``log_format``, with the context and redaction."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for(log_format, tty=stream.isatty()))
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    return handler


def configure_logging(level: str, log_format: str) -> None:
    """Send every log record of this process to stderr at ``level`` (unless logging was set
    up already: then only the chatty loggers are quietened)."""
    logging.basicConfig(level=level, handlers=[build_handler(log_format, sys.stderr)])
    logging.captureWarnings(True)
    for name in CHATTY_LOGGERS:
        chatty = logging.getLogger(name)
        if not any(isinstance(f, DemoteToDebug) for f in chatty.filters):
            chatty.addFilter(DemoteToDebug())
