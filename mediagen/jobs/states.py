"""Job states and the only transitions allowed between them. Pure: no I/O.

The store imports this module, never the other way round; every state change goes through
:func:`next_state`, so an impossible transition fails loudly instead of corrupting a job.
"""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    """Where a job is in its lifecycle (same wording as ``mediagen.v1.JobState``)."""

    #: Admitted (validated and persisted) and waiting for a worker, either for its first attempt
    #: or for a retry after a transient failure.
    PENDING = "pending"
    #: A worker holds the job's lease and is running the prediction or storing its outputs.
    RUNNING = "running"
    #: Finished: every output is copied into our storage.
    SUCCEEDED = "succeeded"
    #: Finished without outputs; the job's error says why.
    FAILED = "failed"
    #: Finished because a caller cancelled it.
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED})


class Transition(enum.StrEnum):
    """Things that happen to a job."""

    CLAIM = "claim"  # a worker takes the job (or re-takes it after a lease expired)
    SUCCEED = "succeed"  # outputs stored
    FAIL = "fail"  # permanent failure, or attempts exhausted
    RETRY = "retry"  # transient failure: wait, then another attempt
    RELEASE = "release"  # the worker is shutting down: hand the job back at once
    CANCEL = "cancel"  # cancellation completed


_TABLE: dict[tuple[JobState, Transition], JobState] = {
    (JobState.PENDING, Transition.CLAIM): JobState.RUNNING,
    (JobState.RUNNING, Transition.CLAIM): JobState.RUNNING,  # lease expired: a new attempt
    (JobState.RUNNING, Transition.SUCCEED): JobState.SUCCEEDED,
    (JobState.RUNNING, Transition.FAIL): JobState.FAILED,
    (JobState.PENDING, Transition.FAIL): JobState.FAILED,  # e.g. attempts exhausted on reclaim
    (JobState.RUNNING, Transition.RETRY): JobState.PENDING,
    (JobState.RUNNING, Transition.RELEASE): JobState.PENDING,
    (JobState.PENDING, Transition.CANCEL): JobState.CANCELED,
    (JobState.RUNNING, Transition.CANCEL): JobState.CANCELED,
}


class InvalidTransition(Exception):
    """The transition is not allowed from the job's current state."""

    def __init__(self, current: JobState, transition: Transition) -> None:
        super().__init__(f"cannot {transition.value} a {current.value} job")
        self.current = current
        self.transition = transition


def next_state(current: JobState, transition: Transition) -> JobState:
    """The state after ``transition``; raises :class:`InvalidTransition` if it is not allowed."""
    try:
        return _TABLE[(current, transition)]
    except KeyError:
        raise InvalidTransition(current, transition) from None


def sources(transition: Transition) -> frozenset[JobState]:
    """States from which ``transition`` is allowed (the WHERE clause of a conditional UPDATE)."""
    return frozenset(state for state, t in _TABLE if t is transition)
