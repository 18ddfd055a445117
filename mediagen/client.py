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

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import mimetypes
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self, TypeVar
from urllib.parse import urljoin, urlsplit

import grpc
import httpx
from google.protobuf import message as protobuf_message
from google.rpc import error_details_pb2, status_pb2

from mediagen.backoff import exponential_delays
from mediagen.errors import FieldViolation
from mediagen.v1 import job_pb2, media_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc

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

DEFAULT_TARGET: Final = "127.0.0.1:50051"

#: States a job never leaves; WatchJob ends after the event that enters one.
TERMINAL_STATES: Final = frozenset(
    {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELED}
)

# Trailer in which gRPC servers send the serialized google.rpc.Status with rich details.
_STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"
_DOWNLOAD_CHUNK_BYTES: Final = 64 * 1024


# -- errors ---------------------------------------------------------------------------------------


class MediagenClientError(Exception):
    """Base of every exception this module raises."""


class StatusError(MediagenClientError):
    """The server answered with a non-OK status; the rich details are decoded.

    Attributes:
        code: the gRPC status code.
        message: the server's message (safe to show to a person).
        reason: ``google.rpc.ErrorInfo.reason`` (for example ``JOB_NOT_FOUND``), or ``""``.
        domain: ``ErrorInfo.domain`` (``mediagen.dev`` for this service's own errors), or ``""``.
        error_metadata: ``ErrorInfo.metadata``.
        field_violations: from ``google.rpc.BadRequest``, which request fields were wrong.
        retry_after_s: from ``google.rpc.RetryInfo``, how long the server asks callers to wait.
        status: the whole decoded ``google.rpc.Status``, for details not lifted out above.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        error_metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
        retry_after_s: float | None = None,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.error_metadata = dict(error_metadata or {})
        self.field_violations = tuple(field_violations)
        self.retry_after_s = retry_after_s
        self.status = status


class InvalidArgumentError(StatusError):
    """The request was malformed; ``field_violations`` says which fields and why."""


class NotFoundError(StatusError):
    """No job or media has that id."""


class FailedPreconditionError(StatusError):
    """The call was valid but the resource's state refuses it (reason ``JOB_ALREADY_FINISHED``)."""


class ResourceExhaustedError(StatusError):
    """The server is rate limiting; wait ``retry_after_s`` before trying again."""


class UnavailableError(StatusError):
    """The server stayed unreachable (or kept asking for a retry) past the retry policy."""


class DeadlineExceededError(StatusError):
    """The call took longer than ``timeout_s``."""


_STATUS_ERRORS: Final[Mapping[grpc.StatusCode, type[StatusError]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


class DownloadError(MediagenClientError):
    """A media file could not be downloaded (HTTP error, network error, unusable URL)."""


class IntegrityError(DownloadError):
    """The downloaded bytes differ from what the Media promises; nothing is left on disk."""


class ParameterError(MediagenClientError, ValueError):
    """A generation parameter could not be turned into ``GenerationParameters``; names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


def _rich_status(exc: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The ``google.rpc.Status`` from the error's trailers, when the server sent one."""
    for key, value in exc.trailing_metadata() or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except protobuf_message.DecodeError:
            return None
        # A status whose code disagrees with the call's is not about this call (grpc_status
        # refuses such a pair too).
        return status if status.code == exc.code().value[0] else None
    return None


def _status_error(exc: grpc.aio.AioRpcError) -> StatusError:
    """Translate a gRPC error into a :class:`StatusError`; the one place this happens."""
    code = exc.code()
    status = _rich_status(exc)
    info = error_details_pb2.ErrorInfo()
    retry_info = error_details_pb2.RetryInfo()
    bad_request = error_details_pb2.BadRequest()
    violations: list[FieldViolation] = []
    retry_after_s: float | None = None
    # Unpack() returns False, leaving the message alone, for a detail of another type. Details
    # this client does not lift out (ResourceInfo, PreconditionFailure) stay in .status.
    for detail in status.details if status is not None else ():
        if detail.Unpack(bad_request):
            violations.extend(
                FieldViolation(v.field, v.description, v.reason or "INVALID_VALUE")
                for v in bad_request.field_violations
            )
        elif detail.Unpack(retry_info):
            retry_after_s = retry_info.retry_delay.ToTimedelta().total_seconds()
        else:
            detail.Unpack(info)
    error_class = _STATUS_ERRORS.get(code, StatusError)
    return error_class(
        code,
        exc.details() or (status.message if status is not None else "") or code.name,
        reason=info.reason,
        domain=info.domain,
        error_metadata=info.metadata,
        field_violations=violations,
        retry_after_s=retry_after_s,
        status=status,
    )


# -- retries --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How the client backs off when the server is ``UNAVAILABLE``.

    Delays double from ``initial_s`` up to ``max_s``, and each is drawn uniformly below that
    ceiling ("full jitter", :func:`mediagen.backoff.exponential_delays`) so that many clients do
    not retry in step. A ``google.rpc.RetryInfo`` from the server is a floor for the next delay.

    ``attempts`` counts calls in all, the first included: ``RetryPolicy(attempts=1)`` disables
    retrying. For ``watch`` the count starts again each time an event arrives, so a long watch
    survives any number of server restarts as long as each reconnect succeeds in time.
    """

    attempts: int = 5
    initial_s: float = 0.2  # seconds
    max_s: float = 5.0  # seconds

    def delays(self) -> Iterator[float]:
        """Yield the ``attempts - 1`` delays before each retry, in seconds."""
        return islice(exponential_delays(self.initial_s, self.max_s), max(0, self.attempts - 1))


#: Used by clients built without a ``retry`` argument (the CLI's among them).
DEFAULT_RETRY_POLICY = RetryPolicy()


# -- generation parameters ------------------------------------------------------------------------

_INT_KEYS: Final = frozenset({"width", "height", "num_outputs", "num_inference_steps", "seed"})
_OUTPUT_FORMATS: Final[Mapping[str, job_pb2.OutputFormat.ValueType]] = {
    "png": job_pb2.OUTPUT_FORMAT_PNG,
    "jpeg": job_pb2.OUTPUT_FORMAT_JPEG,
    "jpg": job_pb2.OUTPUT_FORMAT_JPEG,
    "webp": job_pb2.OUTPUT_FORMAT_WEBP,
}


def _to_int(key: str, value: object) -> int:
    # bool is an int subclass; `width=True` is a mistake, not 1.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        with suppress(ValueError):
            return int(value.strip())
    raise ParameterError(key, f"expected an integer, got {value!r}")


def _to_float(key: str, value: object) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with suppress(ValueError):
            number = float(value.strip())
    if number is None or not math.isfinite(number):
        raise ParameterError(key, f"expected a number, got {value!r}")
    return number


def _to_output_format(key: str, value: object) -> job_pb2.OutputFormat.ValueType:
    if isinstance(value, str) and value.strip().lower() in _OUTPUT_FORMATS:
        return _OUTPUT_FORMATS[value.strip().lower()]
    choices = ", ".join(_OUTPUT_FORMATS)
    raise ParameterError(key, f"expected one of {choices}, got {value!r}")


def _parse_loose(text: str) -> object:
    """A CLI value as JSON when it is JSON (numbers, true/false, null, lists, objects), else text.

    Non-finite numbers (``NaN``, ``1e999``) stay text: a Struct would carry them, but no JSON
    encoder downstream could.
    """

    def refuse(constant: str) -> object:
        raise ValueError(constant)

    try:
        value: object = json.loads(text, parse_constant=refuse)
    except ValueError:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value


def parameters_from_mapping(values: Mapping[str, object]) -> job_pb2.GenerationParameters:
    """Build ``GenerationParameters`` from a plain mapping.

    The typed fields take their own type or a string that parses as it: ``width``, ``height``,
    ``num_outputs``, ``num_inference_steps`` and ``seed`` are integers, ``guidance_scale`` is a
    number, ``negative_prompt`` is text, ``output_format`` is ``png``, ``jpeg`` (or ``jpg``) or
    ``webp``. Every other key goes into ``extra_input`` unchanged, so its value must be
    JSON-like (None, bool, number, str, list, dict).

    For example ``{"width": "512", "output_format": "jpg", "lora_scale": 0.6}`` sets width 512,
    JPEG output, and ``extra_input.lora_scale`` 0.6.

    Range checks (a width of 64 to 4096 and so on) are the server's; this only rejects values of
    the wrong kind, and numbers a protobuf field cannot hold, with a :class:`ParameterError`
    naming the key.
    """
    params = job_pb2.GenerationParameters()
    for key, value in values.items():
        if not key:
            raise ParameterError("", "parameter name is empty")
        typed: object
        if key in _INT_KEYS:
            typed = _to_int(key, value)
        elif key == "guidance_scale":
            typed = _to_float(key, value)
        elif key == "output_format":
            typed = _to_output_format(key, value)
        elif key == "negative_prompt":
            if not isinstance(value, str):
                raise ParameterError(key, f"expected text, got {value!r}")
            typed = value
        else:
            try:
                params.extra_input[key] = value  # type: ignore[assignment]
            except (TypeError, ValueError) as exc:
                raise ParameterError(key, f"cannot be sent as model input: {exc}") from exc
            continue
        try:
            setattr(params, key, typed)
        except ValueError as exc:  # int32/int64 overflow
            raise ParameterError(key, f"{typed!r} is out of range") from exc
    return params


def parse_params(items: Iterable[str]) -> job_pb2.GenerationParameters:
    """Build ``GenerationParameters`` from ``KEY=VALUE`` strings, as ``--param`` gives them.

    Values of typed keys are parsed as in :func:`parameters_from_mapping`; values of other keys
    are parsed loosely as JSON (``steps_ratio=0.5`` is a number, ``hdr=true`` a bool,
    ``style=anime`` a string) and go to ``extra_input``. A key given twice is an error.
    """
    values: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError("", f"expected KEY=VALUE, got {item!r}")
        if key in values:
            raise ParameterError(key, "given more than once")
        values[key] = raw if _is_typed(key) else _parse_loose(raw)
    return parameters_from_mapping(values)


def _is_typed(key: str) -> bool:
    return key in _INT_KEYS or key in {"guidance_scale", "output_format", "negative_prompt"}


# -- downloads ------------------------------------------------------------------------------------

# Chosen over mimetypes where it disagrees with common use (.oga for OGG audio) or knows nothing.
_EXTENSIONS: Final[Mapping[str, str]] = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/mpeg": "mp3",
    "audio/ogg": "ogg",
}
# Media ids become file names; anything that could climb out of dest_dir is refused.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def extension_for(mime_type: str) -> str:
    """File extension (without the dot) for a MIME type; ``bin`` when it is unknown."""
    mime = mime_type.split(";", 1)[0].strip().lower()
    if mime in _EXTENSIONS:
        return _EXTENSIONS[mime]
    guessed = mimetypes.guess_extension(mime)
    return guessed.lstrip(".") if guessed else "bin"


def _open_for_writing(path: Path) -> IO[bytes]:
    return path.open("wb")


# -- the client -----------------------------------------------------------------------------------

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class MediagenClient:
    """An async client for the ``MediaGenerationService``.

    Args:
        target: the gRPC server as ``host:port`` (ignored when ``channel`` is given).
        channel: an existing ``grpc.aio`` channel to use; the client then does not close it.
        credentials: TLS credentials for a channel the client opens itself; plaintext if None.
        timeout_s: deadline of each unary call attempt, in seconds; None for no deadline.
            ``watch`` streams never have one: they last as long as the job.
        metadata: sent with every call (for example ``[("authorization", "Bearer ...")]``).
        retry: backoff on ``UNAVAILABLE``; :data:`DEFAULT_RETRY_POLICY` if None.
        http_base_url: the HTTP gateway, as ``http://host:port``, against which relative media
            URLs and ``status_url`` are resolved; absolute URLs (S3) are used as they are.
        http_client: an ``httpx.AsyncClient`` for downloads; the client then does not close it.

    Use it as an async context manager, or call :meth:`aclose` when done. The channel is opened
    on first use, inside the running event loop, which ``grpc.aio`` requires. One client may be
    shared by many tasks.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        channel: grpc.aio.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        timeout_s: float | None = 30.0,
        metadata: Sequence[tuple[str, str | bytes]] = (),
        retry: RetryPolicy | None = None,
        http_base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.http_base_url = http_base_url.rstrip("/") if http_base_url else None
        self._credentials = credentials
        self._metadata = tuple(metadata)
        self._retry = retry or DEFAULT_RETRY_POLICY
        self._channel = channel
        self._owns_channel = channel is None
        self._stub: pb_grpc.MediaGenerationServiceStub | None = None
        self._http = http_client
        self._owns_http = http_client is None

    async def __aenter__(self) -> Self:
        self._get_stub()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the channel and HTTP client the client opened (not ones it was handed)."""
        if self._owns_channel and self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    def _get_stub(self) -> pb_grpc.MediaGenerationServiceStub:
        if self._stub is None:
            if self._channel is None:
                self._channel = (
                    grpc.aio.secure_channel(self.target, self._credentials)
                    if self._credentials is not None
                    else grpc.aio.insecure_channel(self.target)
                )
            self._stub = pb_grpc.MediaGenerationServiceStub(self._channel)
        return self._stub

    async def _call(
        self, method: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req
    ) -> _Resp:
        """One unary call, retried on UNAVAILABLE as the policy allows; errors translated.

        Every RPC of this service may be repeated safely: reads trivially, GenerateMedia because
        it carries a request_id, CancelJob because cancelling a CANCELED job is a no-op.
        """
        delays = self._retry.delays()
        while True:
            try:
                return await method(request, timeout=self.timeout_s, metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                error = _status_error(exc)
                delay = next(delays, None) if isinstance(error, UnavailableError) else None
                if delay is None:
                    raise error from exc
                await asyncio.sleep(max(delay, error.retry_after_s or 0.0))

    # -- jobs

    async def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        parameters: Mapping[str, object] | job_pb2.GenerationParameters | None = None,
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> job_pb2.Job:
        """Submit a generation job and return it (PENDING, or the earlier job of ``request_id``).

        ``parameters`` is a ``GenerationParameters`` or a mapping as
        :func:`parameters_from_mapping` takes it. ``request_id`` defaults to a fresh UUID4, made
        once per call, so the retries of one call are deduplicated by the server. Pass your own
        to make retries across calls (or processes) idempotent too.

        Raises :class:`InvalidArgumentError` for a bad prompt, model or parameter, and
        :class:`ParameterError` before any call if a mapping value has the wrong type.
        """
        if parameters is not None and not isinstance(parameters, job_pb2.GenerationParameters):
            parameters = parameters_from_mapping(parameters)
        request = pb.GenerateMediaRequest(
            prompt=prompt,
            model=model or "",
            parameters=parameters,
            request_id=request_id or str(uuid.uuid4()),
            labels=dict(labels or {}),
        )
        response = await self._call(self._get_stub().GenerateMedia, request)
        return response.job

    async def get(self, job_id: str) -> job_pb2.Job:
        """Return a job by id; :class:`NotFoundError` if there is none."""
        response = await self._call(self._get_stub().GetJob, pb.GetJobRequest(id=job_id))
        return response.job

    async def cancel(self, job_id: str) -> job_pb2.Job:
        """Cancel a job and return it: CANCELED, or RUNNING with ``cancel_requested`` set.

        A RUNNING job ends CANCELED once its worker has stopped the upstream prediction; use
        :meth:`wait` to see that. :class:`FailedPreconditionError` if the job already finished.
        """
        response = await self._call(self._get_stub().CancelJob, pb.CancelJobRequest(id=job_id))
        return response.job

    async def list(
        self,
        *,
        status: str | job_pb2.JobState.ValueType | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> pb.ListJobsResponse:
        """Return one page of jobs, newest first.

        ``status`` filters by state: a ``JobState`` value, or a name the server accepts
        (``JOB_STATE_SUCCEEDED``, ``succeeded``). ``page_size`` 0 lets the server choose (50).
        Pass the response's ``next_page_token`` as ``page_token`` for the next page; it is empty
        on the last one. See :meth:`iter_jobs` to walk every page.
        """
        if isinstance(status, int):
            status = job_pb2.JobState.Name(status)
        request = pb.ListJobsRequest(
            status=status or "", page_size=page_size, page_token=page_token
        )
        return await self._call(self._get_stub().ListJobs, request)

    async def iter_jobs(
        self, status: str | job_pb2.JobState.ValueType | None = None, *, page_size: int = 0
    ) -> AsyncIterator[job_pb2.Job]:
        """Yield every job (matching ``status``), newest first, fetching pages as needed."""
        token = ""
        while True:
            page = await self.list(status=status, page_size=page_size, page_token=token)
            for job in page.jobs:
                yield job
            token = page.next_page_token
            if not token:
                return

    async def watch(
        self, job_id: str, *, after_sequence: int = 0
    ) -> AsyncIterator[job_pb2.JobEvent]:
        """Yield the job's events in sequence order, ending after the one that finishes the job.

        With ``after_sequence`` 0 the first event is the job's creation (or a snapshot of it);
        otherwise only events after that sequence number are sent, which is how to resume. For
        a finished job whose last event is at or before ``after_sequence`` nothing is yielded.

        The client does this itself when the stream breaks: on ``UNAVAILABLE``, or a stream that
        ends before the job has finished, it reconnects with the last sequence it yielded, and
        skips any event it has already yielded. So every event arrives exactly once, even across
        a server restart. It gives up with :class:`UnavailableError` when the retry policy runs
        out without a single event getting through.

        Leaving the ``async for`` early cancels the stream.
        """
        last = after_sequence
        delays = self._retry.delays()
        while True:
            call = self._get_stub().WatchJob(
                pb.WatchJobRequest(id=job_id, after_sequence=last), metadata=self._metadata
            )
            received = False
            error: StatusError
            try:
                async for response in call:
                    event = response.event
                    if event.sequence <= last:
                        continue
                    last = event.sequence
                    received = True
                    delays = self._retry.delays()  # progress: the retry budget starts afresh
                    yield event
                    if event.job.status in TERMINAL_STATES:
                        return
            except grpc.aio.AioRpcError as exc:
                error = _status_error(exc)
                if not isinstance(error, UnavailableError):
                    raise error from exc
            else:
                # A clean end with nothing in it is how a finished job answers an after_sequence
                # at or past its last event. Any other clean end before a terminal event (a proxy
                # closing the stream) is treated like a drop: resuming gets the rest.
                if not received and (await self.get(job_id)).status in TERMINAL_STATES:
                    return
                error = UnavailableError(
                    grpc.StatusCode.UNAVAILABLE, "the event stream ended before the job finished"
                )
            finally:
                call.cancel()
            delay = next(delays, None)
            if delay is None:
                raise error
            await asyncio.sleep(max(delay, error.retry_after_s or 0.0))

    async def wait(self, job_id: str) -> job_pb2.Job:
        """Watch the job until it finishes, and return it as it ended (whatever the state)."""
        job: job_pb2.Job | None = None
        async for event in self.watch(job_id):
            job = event.job
        # watch() only returns after a terminal event, so job is set; a GetJob keeps this honest
        # if a server ever ends a finished job's stream without replaying anything.
        return job if job is not None else await self.get(job_id)

    # -- media

    async def get_media(self, media_id: str) -> media_pb2.Media:
        """Return one stored output by id; :class:`NotFoundError` if there is none."""
        response = await self._call(self._get_stub().GetMedia, pb.GetMediaRequest(id=media_id))
        return response.media

    def resolve_url(self, url: str) -> str:
        """An absolute URL for a media ``url`` or a job's ``status_url``.

        Relative ones are joined to ``http_base_url``; :class:`DownloadError` if there is none.
        """
        if urlsplit(url).scheme:
            return url
        if not self.http_base_url:
            raise DownloadError(f"URL {url!r} is relative and the client has no http_base_url")
        return urljoin(self.http_base_url + "/", url)

    async def download(self, media: media_pb2.Media, dest_dir: Path) -> Path:
        """Stream ``media.url`` to ``dest_dir/<media.id>.<ext>`` and return that path.

        The extension follows ``media.mime_type`` (``image/jpeg`` gives ``.jpg``). The bytes go
        to a hidden partial file first, counted and hashed as they arrive; only when their size
        and SHA-256 match the Media is the file moved into place, replacing any earlier one.

        Raises :class:`IntegrityError` on a mismatch (also as soon as more bytes arrive than
        ``size_bytes``), and :class:`DownloadError` for HTTP errors, network errors and URLs that
        cannot be fetched; neither leaves a file behind.
        """
        if not _SAFE_NAME.fullmatch(media.id):
            raise DownloadError(f"media id {media.id!r} cannot be used as a file name")
        url = self.resolve_url(media.url)
        dest_dir = Path(dest_dir)
        await asyncio.to_thread(dest_dir.mkdir, parents=True, exist_ok=True)
        final = dest_dir / f"{media.id}.{extension_for(media.mime_type)}"
        partial = dest_dir / f".{final.name}.part"
        try:
            size, digest = await self._fetch(url, partial, limit=media.size_bytes)
            if size != media.size_bytes:
                raise IntegrityError(
                    f"media {media.id}: got {size} bytes, expected {media.size_bytes}"
                )
            if digest != media.sha256.lower():
                raise IntegrityError(
                    f"media {media.id}: sha256 is {digest}, expected {media.sha256 or '(none)'}"
                )
            await asyncio.to_thread(partial.replace, final)
        finally:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
        return final

    async def _fetch(self, url: str, path: Path, *, limit: int) -> tuple[int, str]:
        """Stream ``url`` into ``path``; return the byte count and SHA-256 hex digest."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=True)
        shown = _redacted(url)
        sha = hashlib.sha256()
        size = 0
        try:
            async with self._http.stream("GET", url) as response:
                if response.status_code != httpx.codes.OK:
                    raise DownloadError(f"GET {shown}: HTTP {response.status_code}")
                sink = await asyncio.to_thread(_open_for_writing, path)
                try:
                    async for chunk in response.aiter_bytes(_DOWNLOAD_CHUNK_BYTES):
                        size += len(chunk)
                        if size > limit:
                            raise IntegrityError(
                                f"GET {shown}: more than the {limit} bytes expected"
                            )
                        sha.update(chunk)
                        await asyncio.to_thread(sink.write, chunk)
                finally:
                    await asyncio.to_thread(sink.close)
        except httpx.HTTPError as exc:
            raise DownloadError(f"GET {shown}: {exc}") from exc
        return size, sha.hexdigest()


def _redacted(url: str) -> str:
    """The URL without its query, for messages: a presigned S3 URL carries a credential there."""
    return urlsplit(url)._replace(query="", fragment="").geturl()
