"""How the client commands print jobs, media and errors."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC

import grpc
from google.protobuf import json_format
from google.protobuf import message as protobuf_message
from google.protobuf.timestamp_pb2 import Timestamp

from mediagen.cli.base import EXIT_FAILED, EXIT_OK
from mediagen.client import (
    DownloadError,
    MediagenClient,
)
from mediagen.v1 import job_pb2, media_pb2


def print_error(text: str) -> None:
    print(f"mediagen: error: {text}", file=sys.stderr)


def to_json(message: protobuf_message.Message, *, indent: int | None = 2) -> str:
    return json_format.MessageToJson(message, indent=indent)


def state_name(status: job_pb2.JobState.ValueType) -> str:
    return job_pb2.JobState.Name(status).removeprefix("JOB_STATE_")


def format_time(timestamp: Timestamp) -> str:
    if not timestamp.seconds and not timestamp.nanos:
        return "-"
    return timestamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def fields(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in pairs) + 1
    return "\n".join(f"{name + ':':<{width}} {value}" for name, value in pairs)


def job_text(job: job_pb2.Job, client: MediagenClient) -> str:
    pairs = [
        ("id", job.id),
        (
            "status",
            state_name(job.status) + (" (cancel requested)" if job.cancel_requested else ""),
        ),
        ("progress", f"{job.progress:.0%}"),
        ("model", job.model),
        ("prompt", job.prompt),
        ("attempt", str(job.attempt)),
        ("created", format_time(job.create_time)),
        ("started", format_time(job.start_time)),
        ("completed", format_time(job.complete_time)),
        ("status url", absolute_url(client, job.status_url)),
    ]
    if job.HasField("estimated_completion_time"):
        pairs.append(("estimated", format_time(job.estimated_completion_time)))
    if job.labels:
        pairs.append(("labels", ", ".join(f"{k}={v}" for k, v in sorted(job.labels.items()))))
    if job.HasField("error"):
        pairs.append(("error", f"{code_name(job.error.code)}: {job.error.message}"))
    lines = [fields(pairs)]
    lines.extend(f"  media {media_line(media, client)}" for media in job.media)
    return "\n".join(lines)


def code_name(number: int) -> str:
    """``google.rpc.Code`` name of a status code number (the numbering gRPC's codes share)."""
    return next((code.name for code in grpc.StatusCode if code.value[0] == number), str(number))


def media_line(media: media_pb2.Media, client: MediagenClient) -> str:
    size = f"{media.width}x{media.height}" if media.width and media.height else "-"
    url = absolute_url(client, media.url)
    return f"{media.id}  {media.mime_type}  {size}  {media.size_bytes} bytes  {url}"


def absolute_url(client: MediagenClient, url: str) -> str:
    try:
        return client.resolve_url(url) if url else "-"
    except DownloadError:
        return url


def exit_code_for(job: job_pb2.Job) -> int:
    """Exit status for a finished job; a line on stderr saying why it did not succeed."""
    if job.status == job_pb2.JOB_STATE_SUCCEEDED:
        return EXIT_OK
    reason = f": {job.error.message}" if job.error.message else ""
    print_error(f"job {job.id} {state_name(job.status)}{reason}")
    return EXIT_FAILED
