"""When an emulated prediction changes state, as offsets from its creation. Pure: no I/O.

A prediction's state is never stepped by a task: it is read off its timeline at the moment of a
request. That keeps hundreds of concurrent predictions free (no timers, no tasks), and a cancel
only shortens the timeline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mediagen.providers.base import PredictionStatus

#: Where in its run a prediction fails or is cancelled by an ``Outcome`` fault.
_INTERRUPT_AT = 0.5


@dataclass(frozen=True)
class Timeline:
    """Offsets in seconds from creation."""

    outcome: PredictionStatus  # the terminal status reached at ``end_s``
    end_s: float
    start_s: float | None  # predict() begins; None: it never does (aborted, early cancel)
    run_s: float  # how long predict() takes when nothing interrupts it
    output_s: float | None  # outputs exist from here on; None: never

    @classmethod
    def plan(
        cls,
        *,
        latency_s: float,
        starting_s: float,
        finalize_s: float,
        outcome: PredictionStatus = PredictionStatus.SUCCEEDED,
    ) -> Timeline:
        """The timeline of a new prediction that ends in ``outcome`` after ``latency_s``."""
        start = min(starting_s, latency_s)
        finalize = min(finalize_s, latency_s - start)
        run = latency_s - start - finalize
        if outcome is PredictionStatus.SUCCEEDED:
            return cls(outcome, latency_s, start, run, output_s=start + run)
        if outcome is PredictionStatus.ABORTED:
            # A deadline passed in the queue: it never ran, and is not billed.
            return cls(outcome, start, None, run, output_s=None)
        if outcome in (PredictionStatus.FAILED, PredictionStatus.CANCELED):
            return cls(outcome, start + run * _INTERRUPT_AT, start, run, output_s=None)
        raise ValueError(f"{outcome} is not a terminal status")

    def status_at(self, t: float) -> PredictionStatus:
        if t >= self.end_s:
            return self.outcome
        if self.start_s is not None and t >= self.start_s:
            return PredictionStatus.PROCESSING
        return PredictionStatus.STARTING

    def started_at(self, t: float) -> float | None:
        """Offset of the start, if it has happened by ``t``."""
        return self.start_s if self.start_s is not None and t >= self.start_s else None

    def progress_at(self, t: float) -> float:
        """Fraction of predict() done at ``t``; it stops moving when the run ends early."""
        if self.start_s is None or self.run_s <= 0:
            return 1.0 if self.output_ready(t) else 0.0
        done = min(t, self.end_s) - self.start_s
        return min(max(done / self.run_s, 0.0), 1.0)

    def output_ready(self, t: float) -> bool:
        return self.output_s is not None and t >= self.output_s

    @property
    def answer_s(self) -> float:
        """When a sync (``Prefer: wait``) request can be answered: outputs exist or it ended."""
        return self.end_s if self.output_s is None else min(self.output_s, self.end_s)

    def interrupted(
        self, t: float, status: PredictionStatus = PredictionStatus.CANCELED
    ) -> Timeline:
        """The timeline after a cancel (or a ``Cancel-After`` deadline, ``aborted``) at ``t``.

        Unchanged if it already ended. A deadline that passes during the run cancels it, as on
        Replicate: only one that passes in the queue aborts it.
        """
        if t >= self.end_s:
            return self
        started = self.started_at(t)
        if status is PredictionStatus.ABORTED and started is not None:
            status = PredictionStatus.CANCELED
        output = self.output_s if self.output_ready(t) else None
        return dataclasses.replace(self, outcome=status, end_s=t, start_s=started, output_s=output)
