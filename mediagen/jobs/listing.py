"""ListJobs filters: what a request asks for, validated, and the key a page token is bound to.
Pure: no I/O.

The filters (state, model, creation time) are ANDed. A page token carries :meth:`JobFilter.key`,
so a token made for one filter cannot page through another (:mod:`mediagen.jobs.pagination`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from mediagen.errors import FieldViolation, InvalidArgument, bounded
from mediagen.jobs.states import JobState
from mediagen.jobs.validation import MODEL_REFERENCE
from mediagen.v1 import media_generation_service_pb2 as pb

#: ListJobs `status` words: JobState names, their short forms, and the original REST words.
_STATUS_WORDS: dict[str, JobState] = {
    **{state.value: state for state in JobState},
    **{f"job_state_{state.value}": state for state in JobState},
    "processing": JobState.RUNNING,
    "completed": JobState.SUCCEEDED,
    "cancelled": JobState.CANCELED,
}
#: google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799
#: Hex digits of the filter digest a page token carries.
KEY_CHARS = 32


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing returns; None (or empty) fields do not filter."""

    status: JobState | None = None
    #: ``owner/name`` (every version) or ``owner/name:version`` (that one only).
    model: str = ""
    #: Inclusive lower bound of ``create_time``.
    created_after: datetime | None = None
    #: Exclusive upper bound of ``create_time``.
    created_before: datetime | None = None

    @property
    def model_has_version(self) -> bool:
        return ":" in self.model

    def key(self) -> str:
        """A short digest of the filter: equal for equal filters, and for nothing else."""
        canonical = json.dumps(
            [
                self.status.value if self.status else "",
                self.model,
                self.created_after.isoformat() if self.created_after else "",
                self.created_before.isoformat() if self.created_before else "",
            ],
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:KEY_CHARS]


#: Every job.
NO_FILTER = JobFilter()


def parse_status(value: str) -> JobState | None:
    """The ListJobs ``status`` field: empty means any state."""
    word = value.strip().lower()
    if not word:
        return None
    if word not in _STATUS_WORDS:
        raise InvalidArgument(
            [
                FieldViolation(
                    "status",
                    f"unknown status {bounded(value, 40)!r}; use one of "
                    + ", ".join(s.value for s in JobState)
                    + " (or pending, processing, completed)",
                )
            ]
        )
    return _STATUS_WORDS[word]


def _time(
    stamp: Timestamp, given: bool, field: str, violations: list[FieldViolation]
) -> datetime | None:
    if not given:
        return None
    if not (_MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS and 0 <= stamp.nanos < 1_000_000_000):
        violations.append(
            FieldViolation(field, "must be a time between 0001-01-01 and 9999-12-31 (UTC)")
        )
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def parse_filter(request: pb.ListJobsRequest) -> JobFilter:
    """The request's filter; INVALID_ARGUMENT naming every bad field."""
    violations: list[FieldViolation] = []
    try:
        status = parse_status(request.status)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
        status = None
    model = request.model.strip()
    if model and not MODEL_REFERENCE.match(model):
        violations.append(
            FieldViolation(
                "model", f"{bounded(model, 60)!r} is not an owner/name[:version] model reference"
            )
        )
    after = _time(
        request.created_after, request.HasField("created_after"), "created_after", violations
    )
    before = _time(
        request.created_before, request.HasField("created_before"), "created_before", violations
    )
    if after is not None and before is not None and before <= after:
        violations.append(FieldViolation("created_before", "must be later than created_after"))
    if violations:
        raise InvalidArgument(violations)
    return JobFilter(status, model, after, before)
