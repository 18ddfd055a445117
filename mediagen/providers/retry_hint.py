"""A provider's wait hint (``Retry-After`` and friends), read from a response. Pure."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

_RESETS_IN = re.compile(r"resets in ~?\s*(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)


def retry_after_s(
    header: str | None, body: Any = None, *, now: datetime | None = None
) -> float | None:
    """The provider's wait hint: a ``Retry-After`` header (seconds or a date), else the body's
    ``retry_after``, else "resets in ~Ns" in its ``detail``. None if there is none."""
    if header and header.strip():
        value = header.strip()
        with contextlib.suppress(ValueError):
            return max(float(value), 0.0)
        moment = _parse_date(value)
        if moment is not None:
            return max((moment - (now or datetime.now(UTC))).total_seconds(), 0.0)
    if isinstance(body, Mapping):
        hint = body.get("retry_after")
        if isinstance(hint, int | float) and not isinstance(hint, bool):
            return max(float(hint), 0.0)
        detail = body.get("detail")
        if isinstance(detail, str) and (match := _RESETS_IN.search(detail)):
            return float(match[1])
    return None


def _parse_date(value: str) -> datetime | None:
    for parse in (parsedate_to_datetime, datetime.fromisoformat):
        with contextlib.suppress(ValueError, TypeError, IndexError):
            moment = parse(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None
