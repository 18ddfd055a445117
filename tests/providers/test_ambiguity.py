"""Which failed provider calls may have taken effect: one table, no I/O."""

from __future__ import annotations

import pydantic.v1
import pytest
from httpx import (
    ConnectError,
    ConnectTimeout,
    PoolTimeout,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    UnsupportedProtocol,
    WriteError,
    WriteTimeout,
)
from replicate.exceptions import ReplicateError

from mediagen.providers.ambiguity import Answer, classify


def _unparseable() -> Exception:
    class Strict(pydantic.v1.BaseModel):
        status: int

    try:
        Strict.parse_obj({"status": "aborted"})
    except pydantic.v1.ValidationError as exc:
        return exc
    raise AssertionError("pydantic accepted it")


REFUSED, LATER, NOT_SENT, NO_ANSWER = (
    Answer.REFUSED,
    Answer.RETRY_LATER,
    Answer.NOT_SENT,
    Answer.NO_ANSWER,
)

#: (what the client raised, answer, transient, ambiguous for a create)
TABLE: list[tuple[str, BaseException, Answer, bool, bool]] = [
    # Definite refusals: nothing was made, and asking again is pointless.
    ("400", ReplicateError(status=400), REFUSED, False, False),
    ("401", ReplicateError(status=401, detail="You did not pass a token"), REFUSED, False, False),
    ("403", ReplicateError(status=403), REFUSED, False, False),
    ("404", ReplicateError(status=404), REFUSED, False, False),
    ("409", ReplicateError(status=409), REFUSED, False, False),
    ("422", ReplicateError(status=422, title="Invalid version"), REFUSED, False, False),
    # Definite "not now": nothing was made; later may work.
    ("408", ReplicateError(status=408), LATER, True, False),
    ("429", ReplicateError(status=429, detail="Request was throttled."), LATER, True, False),
    # Never left this process: nothing was made.
    ("connect error", ConnectError("refused"), NOT_SENT, True, False),
    ("connect timeout", ConnectTimeout("slow"), NOT_SENT, True, False),
    ("pool timeout", PoolTimeout("busy"), NOT_SENT, True, False),
    ("bad base URL", UnsupportedProtocol("ftp://"), NOT_SENT, False, False),
    # No definite answer: the prediction may exist and be billed.
    ("500", ReplicateError(status=500), NO_ANSWER, True, True),
    ("502", ReplicateError(status=502), NO_ANSWER, True, True),
    ("503", ReplicateError(status=503), NO_ANSWER, True, True),
    ("504", ReplicateError(status=504), NO_ANSWER, True, True),
    ("599", ReplicateError(status=599), NO_ANSWER, True, True),
    ("error without a status", ReplicateError(), NO_ANSWER, True, True),
    ("read timeout", ReadTimeout("silence"), NO_ANSWER, True, True),
    ("write timeout", WriteTimeout("stuck"), NO_ANSWER, True, True),
    ("dropped connection", RemoteProtocolError("Server disconnected"), NO_ANSWER, True, True),
    ("connection reset", ReadError("reset by peer"), NO_ANSWER, True, True),
    ("write error", WriteError("broken pipe"), NO_ANSWER, True, True),
    ("our own deadline", TimeoutError(), NO_ANSWER, True, True),
    ("a body that is not JSON", ValueError("Expecting value"), NO_ANSWER, True, True),
    ("an answer that does not parse", _unparseable(), NO_ANSWER, True, True),
]


@pytest.mark.parametrize(
    ("raised", "answer", "transient", "ambiguous"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_create_verdicts(
    raised: BaseException, answer: Answer, transient: bool, ambiguous: bool
) -> None:
    verdict = classify(raised, creating=True)
    assert (verdict.answer, verdict.transient, verdict.ambiguous) == (answer, transient, ambiguous)


@pytest.mark.parametrize(
    ("raised", "answer", "transient"), [row[1:4] for row in TABLE], ids=[row[0] for row in TABLE]
)
def test_other_calls_are_never_ambiguous(
    raised: BaseException, answer: Answer, transient: bool
) -> None:
    # A read or a cancel has no effect to recover: no answer only means "try again".
    verdict = classify(raised, creating=False)
    assert (verdict.answer, verdict.transient, verdict.ambiguous) == (answer, transient, False)
