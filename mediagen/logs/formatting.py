"""The two ways a process writes its log: one JSON object per line, or readable text.

JSON lines have ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message``, then
the known context (``request_id``, ``job_id``, ``tenant``, ``attempt``: see
:mod:`mediagen.logs.context`), any ``extra=`` fields, and for an exception ``error`` with its
``type``, ``message`` and ``stack``. Text lines are the classic ``time level logger message``
with the context in brackets. In both, exception text is redacted as messages are
(:mod:`mediagen.redaction`): a traceback may quote a token or a signed URL too.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeAlias

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from mediagen.logs.context import FIELDS
from mediagen.redaction import redact

_ExcInfo: TypeAlias = (
    tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
)
#: Record attributes that are no fields of a line: the standard ones, and uvicorn's copy of
#: its message with terminal colours.
_NOT_FIELDS = [*RESERVED_ATTRS, "taskName", "color_message"]
#: Keys that come first, in this order.
_LEADING = ("time", "level", "logger", "message", *FIELDS)
#: How the text format names the context fields.
_TEXT_NAMES = {"request_id": "request_id", "job_id": "job", "tenant": "tenant", "attempt": "try"}


def _utc_time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonLines(JsonFormatter):
    """One JSON object per record (python-json-logger does the encoding)."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=_NOT_FIELDS,
            json_default=str,
            json_ensure_ascii=False,  # "pending→running", not "pending\u2192running": grep finds it
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["time"] = _utc_time(record)
        traceback = log_data.pop("exc_info", None)
        stack = redact(traceback) if isinstance(traceback, str) else None
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            log_data["error"] = {
                "type": type(error).__qualname__,
                "message": redact(str(error)),
                "stack": stack,
            }
        elif stack is not None:  # only the text of an exception survived (a copied record)
            log_data["error"] = {"stack": stack}

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        leading = {key: log_data[key] for key in _LEADING if key in log_data}
        return leading | {key: value for key, value in log_data.items() if key not in leading}


class TextLines(logging.Formatter):
    """``time level logger message [request_id=… job=… tenant=… try=…]`` (what the message does
    not say already), then any traceback."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        words = set(record.message.split())
        context = [
            pair
            for name in FIELDS
            if getattr(record, name, None) is not None
            # The runner's own messages say job=… and try=… already: once is enough to read.
            and (pair := f"{_TEXT_NAMES[name]}={getattr(record, name)}") not in words
        ]
        return f"{line} [{' '.join(context)}]" if context else line

    def formatException(self, ei: _ExcInfo) -> str:
        return redact(super().formatException(ei))


def formatter_for(log_format: str, *, tty: bool) -> logging.Formatter:
    """The formatter for ``log_format`` (``json``, ``text`` or ``auto``: text on a terminal,
    JSON otherwise)."""
    if log_format == "text" or (log_format == "auto" and tty):
        return TextLines()
    return JsonLines()
