"""A small typed async client for ``mediagen.v1``, for services that would otherwise use raw stubs.

Usage::

    async with MediagenClient("127.0.0.1:50051") as client:
        job = await client.generate("a red fox", parameters={"width": 512, "height": 512})
        async for event in client.watch(job.id):
            print(event.sequence, event.job.progress)
        job = await client.get(job.id)
        paths = [await client.download(media, Path("out")) for media in job.media]

What the client adds over the generated stub:

* Unary calls retry on ``UNAVAILABLE`` with capped, jittered backoff (:class:`RetryPolicy`).
  ``generate`` sends a ``request_id`` (a fresh UUID unless given), so a retry after a lost
  response returns the same job instead of starting a second one.
* :meth:`MediagenClient.watch` reconnects a dropped stream and resumes after the last sequence
  seen, so the caller sees every event once, in order, and the iterator ends after the event
  that finishes the job.
* :meth:`MediagenClient.download` streams a media file to disk and checks its size and SHA-256.
* gRPC errors become the exceptions below, with the rich details decoded.

Exceptions::

    MediagenClientError             anything this module raises
    ├── StatusError                 the server answered with a non-OK gRPC status
    │   ├── InvalidArgumentError    INVALID_ARGUMENT (see .field_violations)
    │   ├── NotFoundError           NOT_FOUND
    │   ├── FailedPreconditionError FAILED_PRECONDITION (e.g. cancelling a finished job)
    │   ├── ResourceExhaustedError  RESOURCE_EXHAUSTED (see .retry_after_s)
    │   ├── UnavailableError        UNAVAILABLE, after the retries ran out
    │   └── DeadlineExceededError   DEADLINE_EXCEEDED (the call's timeout_s passed)
    ├── DownloadError               a media file could not be fetched
    │   └── IntegrityError          ... or its bytes do not match the Media's size or sha256
    └── ParameterError              a generation parameter is malformed (also a ValueError)
"""

from mediagen.client.client import (
    DEFAULT_RETRY_POLICY,
    DEFAULT_TARGET,
    TERMINAL_STATES,
    MediagenClient,
    RetryPolicy,
    extension_for,
)
from mediagen.client.errors import (
    DeadlineExceededError,
    DownloadError,
    FailedPreconditionError,
    IntegrityError,
    InvalidArgumentError,
    MediagenClientError,
    NotFoundError,
    ParameterError,
    ResourceExhaustedError,
    StatusError,
    UnavailableError,
)
from mediagen.client.params import parameters_from_mapping, parse_params
from mediagen.errors import FieldViolation

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_TARGET",
    "TERMINAL_STATES",
    "DeadlineExceededError",
    "DownloadError",
    "FailedPreconditionError",
    "FieldViolation",
    "IntegrityError",
    "InvalidArgumentError",
    "MediagenClient",
    "MediagenClientError",
    "NotFoundError",
    "ParameterError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "StatusError",
    "UnavailableError",
    "extension_for",
    "parameters_from_mapping",
    "parse_params",
]
