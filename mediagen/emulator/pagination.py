"""Cursor pagination of the prediction list, newest first, as Replicate pages it. Pure.

A cursor is an opaque token for "older than creation number N" (``next``) or "newer than N"
(``previous``); creation numbers only grow, so pages stay stable while predictions are added.
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Sequence
from dataclasses import dataclass

_NEXT = "n"
_PREVIOUS = "p"


@dataclass(frozen=True)
class Cursor:
    direction: str  # "n": older than seq; "p": newer than seq
    seq: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.direction}{self.seq}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """``ValueError`` if the token is not one this module made."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            direction, seq = raw[0], int(raw[1:])
        except (ValueError, IndexError) as exc:
            raise ValueError(f"invalid cursor {token!r}") from exc
        if direction not in (_NEXT, _PREVIOUS) or seq < 0:
            raise ValueError(f"invalid cursor {token!r}")
        return cls(direction, seq)


@dataclass(frozen=True)
class PageSlice:
    """Items ``[lo, hi)`` of the ascending sequence, to be shown newest first."""

    lo: int
    hi: int
    next: Cursor | None
    previous: Cursor | None


def select_page(seqs: Sequence[int], cursor: Cursor | None, size: int) -> PageSlice:
    """The page of ``seqs`` (ascending creation numbers) that ``cursor`` points at."""
    count = len(seqs)
    if cursor is None:
        hi = count
        lo = max(0, hi - size)
    elif cursor.direction == _NEXT:
        hi = bisect.bisect_left(seqs, cursor.seq)
        lo = max(0, hi - size)
    else:
        lo = bisect.bisect_right(seqs, cursor.seq)
        hi = min(count, lo + size)
    if lo >= hi:
        return PageSlice(lo, lo, None, None)
    older = Cursor(_NEXT, seqs[lo]) if lo > 0 else None
    newer = Cursor(_PREVIOUS, seqs[hi - 1]) if hi < count else None
    return PageSlice(lo, hi, older, newer)
