"""``--older-than`` / ``--newer-than`` values: an age (``30s``, ``10m``, ``2h``, ``3d``) or a UTC
time (``2026-12-01T10:00:00Z``). Pure: the caller passes "now".

An age becomes a time once, when the command runs, so every page of one listing has the same
bound; the "more:" hint prints that time (:func:`format_time`), not the age, because a page token
is only good for the exact filter it was issued for.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import Final

_AGE: Final = re.compile(r"^(\d{1,9})([smhd])$")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}

#: What an age flag holds until "now" is known.
Age = timedelta | datetime


def parse_age(text: str) -> Age:
    """argparse ``type=``: a duration back from now, or an absolute, zoned time."""
    value = text.strip()
    if match := _AGE.match(value):
        return timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an age (30s, 10m, 2h, 3d) or a UTC time (2026-12-01T10:00:00Z): {text!r}"
        ) from None
    if moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"a time needs its zone (Z or +01:00): {text!r}")
    return moment.astimezone(UTC)


def resolve(age: Age | None, now: datetime) -> datetime | None:
    """The time ``age`` means at ``now``, to the whole second (so the hint prints it exactly)."""
    if age is None:
        return None
    if isinstance(age, datetime):
        return age
    try:
        return now.replace(microsecond=0) - age
    except OverflowError:  # further back than year 1: no job is older than that
        return datetime.min.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC, as :func:`parse_age` reads it back."""
    text = moment.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"
