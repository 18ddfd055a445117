"""Progress of a prediction from its logs (tqdm bars). Pure: no I/O.

Cog writes tqdm redraws joined by ``\\r`` (reference/replicate.md §2), which the 1.0.7 client's
own parser misreads, so: split on ``[\\r\\n]+``, take the last segment that is a bar, and use
``n/total`` (finer than the rounded percent). :class:`ProgressTracker` keeps the value monotonic
within an attempt: a bar that restarts or changes ``total`` is a new phase (base then refiner,
one bar per image) and fills the room left, never moving backwards. It stays below
:data:`MAX_UNTIL_DONE` until the prediction succeeded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

#: Ceiling before the prediction has succeeded: outputs still have to be stored.
MAX_UNTIL_DONE = 0.99

_SEGMENTS = re.compile(r"[\r\n]+")
_BAR = re.compile(r"(\d{1,3})%\s*\|[^|]*\|\s*(\d+)/(\d+)")


@dataclass(frozen=True)
class Bar:
    """One tqdm redraw: ``n`` of ``total`` steps."""

    n: int
    total: int

    @property
    def fraction(self) -> float:
        return min(self.n / self.total, 1.0)


def last_bar(logs: str | None) -> Bar | None:
    """The most recent tqdm bar in ``logs``, or None if there is none."""
    if not logs:
        return None
    for segment in reversed(_SEGMENTS.split(logs)):
        match = _BAR.search(segment)
        if match and int(match[3]) > 0:
            return Bar(int(match[2]), int(match[3]))
    return None


@dataclass(frozen=True)
class ProgressTracker:
    """Progress of one attempt; :meth:`observe` returns the next state.

    ``value`` (0..1) is what to report. A phase is one bar; the first maps onto
    ``[0, MAX_UNTIL_DONE]``, each later one onto the room the earlier ones left.
    """

    value: float = 0.0
    phase: Bar | None = None  # the bar seen last, to recognise a new phase
    phase_base: float = 0.0  # ``value`` when the current phase began

    def observe(self, logs: str | None, *, succeeded: bool = False) -> ProgressTracker:
        if succeeded:
            return replace(self, value=1.0)
        bar = last_bar(logs)
        if bar is None:
            return self  # no bar (yet, or ever: many models print none)
        state = self
        if self.phase is not None and (bar.total != self.phase.total or bar.n < self.phase.n):
            state = replace(self, phase_base=self.value)  # a new phase: restart from here
        room = MAX_UNTIL_DONE - state.phase_base
        value = min(max(state.value, state.phase_base + room * bar.fraction), MAX_UNTIL_DONE)
        return replace(state, value=value, phase=bar)
