"""Rows to protos. Pure: no I/O.

Media URLs depend on storage (and presigned S3 URLs expire), so protos built here, and the job
snapshots stored with events, carry each media's *storage key* in ``Media.url``; the API swaps in
a real URL (:func:`mediagen.api.urls.resolve_job`) on the way out, and nothing else reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from google.protobuf import json_format, timestamp_pb2
from google.rpc import status_pb2

from mediagen.jobs.states import JobState
from mediagen.redaction import bound
from mediagen.v1 import job_pb2, media_pb2

#: Longest error message a job is read with.
MAX_READ_MESSAGE_CHARS = 8192

STATE_TO_PROTO: dict[JobState, job_pb2.JobState.ValueType] = {
    JobState.PENDING: job_pb2.JOB_STATE_PENDING,
    JobState.RUNNING: job_pb2.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: job_pb2.JOB_STATE_SUCCEEDED,
    JobState.FAILED: job_pb2.JOB_STATE_FAILED,
    JobState.CANCELED: job_pb2.JOB_STATE_CANCELED,
}

KIND_TO_PROTO: dict[str, media_pb2.MediaKind.ValueType] = {
    "image": media_pb2.MEDIA_KIND_IMAGE,
    "video": media_pb2.MEDIA_KIND_VIDEO,
    "audio": media_pb2.MEDIA_KIND_AUDIO,
}


class MediaFields(Protocol):
    """What a media proto is made from: a :class:`MediaRow`, or a Core row of the table."""

    @property
    def id(self) -> str: ...
    @property
    def job_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def mime_type(self) -> str: ...
    @property
    def storage_key(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def create_time(self) -> datetime: ...


class JobFields(Protocol):
    """What a job proto is made from: a :class:`JobRow`, or a Core row of the table (the
    worker's writes use Core: building an ORM object costs more than the proto)."""

    @property
    def id(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def parameters(self) -> dict[str, Any]: ...
    @property
    def labels(self) -> dict[str, str]: ...
    @property
    def progress(self) -> float: ...
    @property
    def attempt(self) -> int: ...
    @property
    def error(self) -> bytes | None: ...
    @property
    def cancel_requested(self) -> bool: ...
    @property
    def create_time(self) -> datetime: ...
    @property
    def update_time(self) -> datetime: ...
    @property
    def start_time(self) -> datetime | None: ...
    @property
    def complete_time(self) -> datetime | None: ...
    @property
    def estimated_completion_time(self) -> datetime | None: ...


def status_url(job_id: str) -> str:
    return f"/api/v1/jobs/status/{job_id}"


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def media_to_proto(row: MediaFields) -> media_pb2.Media:
    return media_pb2.Media(
        id=row.id,
        job_id=row.job_id,
        kind=KIND_TO_PROTO.get(row.kind, media_pb2.MEDIA_KIND_UNSPECIFIED),
        mime_type=row.mime_type,
        url=row.storage_key,
        width=row.width,
        height=row.height,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        create_time=timestamp(row.create_time),
    )


def job_to_proto(row: JobFields, media: Sequence[MediaFields] = ()) -> job_pb2.Job:
    job = job_pb2.Job(
        id=row.id,
        status=STATE_TO_PROTO[JobState(row.status)],
        prompt=row.prompt,
        model=row.model,
        progress=row.progress,
        attempt=row.attempt,
        media=[media_to_proto(m) for m in media],
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        status_url=status_url(row.id),
        labels=row.labels,
        cancel_requested=row.cancel_requested,
        tenant=row.tenant,
    )
    json_format.ParseDict(row.parameters, job.parameters)
    if row.error:
        job.error.CopyFrom(status_pb2.Status.FromString(row.error))
        # Rows written before errors were bounded may hold megabytes; never send those.
        job.error.message = bound(job.error.message, MAX_READ_MESSAGE_CHARS)
    _set_times(job, row.start_time, row.complete_time, row.estimated_completion_time)
    return job


def new_job_to_proto(
    values: Mapping[str, Any], parameters: job_pb2.GenerationParameters
) -> job_pb2.Job:
    """What :func:`job_to_proto` makes of a job just inserted with the column ``values`` (no
    media, no error), built without a row object and without reading ``parameters`` back from
    their JSON: a submission's cost."""
    job = job_pb2.Job(
        id=values["id"],
        status=STATE_TO_PROTO[JobState(values["status"])],
        prompt=values["prompt"],
        model=values["model"],
        progress=values["progress"],
        attempt=values["attempt"],
        create_time=timestamp(values["create_time"]),
        update_time=timestamp(values["update_time"]),
        status_url=status_url(values["id"]),
        labels=values["labels"],
        cancel_requested=values["cancel_requested"],
        tenant=values["tenant"],
    )
    if parameters.ListFields():  # as read back: empty parameters leave the field unset
        job.parameters.CopyFrom(parameters)
    _set_times(job, None, None, values["estimated_completion_time"])
    return job


def _set_times(
    job: job_pb2.Job,
    start_time: datetime | None,
    complete_time: datetime | None,
    estimated_completion_time: datetime | None,
) -> None:
    for field, value in (
        ("start_time", start_time),
        ("complete_time", complete_time),
        ("estimated_completion_time", estimated_completion_time),
    ):
        if value is not None:
            getattr(job, field).CopyFrom(timestamp(value))
