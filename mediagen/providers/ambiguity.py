"""Whether a failed provider call may still have taken effect. Pure: no I/O.

A create that got no definite answer is *ambiguous*: the prediction may exist and be billed, so
before any second create for that job the worker looks for it (docs/predictions.md). Only a
clear refusal, or a request that never left this process, proves that nothing was made:

===========================================  ===============  =========  ===================
what came back                               answer           transient  ambiguous (create)
===========================================  ===============  =========  ===================
4xx other than 408/429 (401, 404, 422, ...)  REFUSED          no         no
408, 429                                     RETRY_LATER      yes        no
connect error/timeout, pool timeout          NOT_SENT         yes        no
bad base URL (unsupported protocol)          NOT_SENT         no         no
5xx (any), or an error status we cannot read NO_ANSWER        yes        yes
timeout, dropped connection after sending    NO_ANSWER        yes        yes
a 2xx answer that does not parse             NO_ANSWER        yes        yes
our own deadline passing mid-call            NO_ANSWER        yes        yes
===========================================  ===============  =========  ===================

A 5xx is ambiguous because a proxy or load balancer answers 502/504 whenever the backend is slow,
whether or not the backend went on to create the prediction. Calls other than create have no
effect worth recovering (a read, or a cancel that may simply be repeated), so for them
NO_ANSWER is only transient.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import httpx
from replicate.exceptions import ReplicateError


class Answer(enum.Enum):
    """What a failed call tells us about its effect."""

    #: A definite refusal: nothing was done, and the same call would be refused again.
    REFUSED = "refused"
    #: A definite "not now" (429, 408): nothing was done; the same call may succeed later.
    RETRY_LATER = "retry_later"
    #: The request never reached the provider: nothing was done.
    NOT_SENT = "not_sent"
    #: No definite answer: the call may have taken effect.
    NO_ANSWER = "no_answer"


@dataclass(frozen=True)
class Verdict:
    answer: Answer
    #: Retrying later may succeed.
    transient: bool
    #: A create that may have made a prediction: look for it before creating again.
    ambiguous: bool


_RETRY_LATER_STATUSES = frozenset({408, 429})
_NOTHING_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


def answer_for_status(status: int) -> Answer:
    """The answer an HTTP error status gives."""
    if status in _RETRY_LATER_STATUSES:
        return Answer.RETRY_LATER
    if 400 <= status < 500:
        return Answer.REFUSED
    return Answer.NO_ANSWER  # 5xx, and a status the client could not tell us (None/0)


def answer_for_exception(exc: BaseException) -> Answer:
    """The answer a failed call gives, from what the client raised."""
    if isinstance(exc, ReplicateError):
        return answer_for_status(exc.status or 0)
    if isinstance(exc, httpx.HTTPStatusError):
        return answer_for_status(exc.response.status_code)
    if isinstance(exc, _NOTHING_SENT):
        return Answer.NOT_SENT
    # Read/write timeouts, dropped connections, protocol errors, our own deadline (TimeoutError),
    # an unparseable answer (ValueError: pydantic or JSON): the request may have arrived.
    return Answer.NO_ANSWER


def verdict(answer: Answer, *, creating: bool, misconfigured: bool = False) -> Verdict:
    """Transient and ambiguous for an answer; ``misconfigured`` (a bad URL) is never transient."""
    transient = answer is not Answer.REFUSED and not misconfigured
    return Verdict(answer, transient, creating and answer is Answer.NO_ANSWER)


def classify(exc: BaseException, *, creating: bool) -> Verdict:
    """The verdict on a failed call that raised ``exc``."""
    return verdict(
        answer_for_exception(exc),
        creating=creating,
        misconfigured=isinstance(exc, httpx.UnsupportedProtocol),
    )
