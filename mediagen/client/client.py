"""The client itself: retries, the resuming watch, verified downloads."""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self, TypeVar
from urllib.parse import urljoin, urlsplit

import grpc
import httpx

from mediagen.backoff import exponential_delays
from mediagen.client.errors import (
    DownloadError,
    IntegrityError,
    StatusError,
    UnavailableError,
    _status_error,
)
from mediagen.client.params import parameters_from_mapping
from mediagen.tls import ClientTLS
from mediagen.v1 import job_pb2, media_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc

DEFAULT_TARGET: Final = "127.0.0.1:50051"

#: States a job never leaves; WatchJob ends after the event that enters one.
TERMINAL_STATES: Final = frozenset(
    {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELED}
)

_DOWNLOAD_CHUNK_BYTES: Final = 64 * 1024


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
        tls: talk TLS (implied by ``ca``, ``cert`` or ``key``): the channel checks the server
            against ``ca`` (a PEM file), or against gRPC's own roots without one, and HTTPS
            media downloads trust ``ca`` besides httpx's roots.
        ca: PEM file of the roots that signed the server's (and the gateway's) certificate.
        cert, key: PEM files of a client certificate chain and its key, for a server that
            requires one (mTLS); presented on the channel and to the gateway for downloads.
        timeout_s: deadline of each unary call attempt, in seconds; None for no deadline.
            ``watch`` streams never have one: they last as long as the job.
        metadata: sent with every call (for example ``[("x-request-id", "...")]``).
        api_key: an API key (``mg_...``), sent as ``authorization: Bearer <key>`` with every call,
            streams and retries included, and with downloads from ``http_base_url`` (never to
            another host, such as S3, whose URLs carry their own credentials).
        retry: backoff on ``UNAVAILABLE``; :data:`DEFAULT_RETRY_POLICY` if None.
        http_base_url: the HTTP gateway, as ``http://host:port``, against which relative media
            URLs and ``status_url`` are resolved; absolute URLs (S3) are used as they are.
        http_client: an ``httpx.AsyncClient`` for downloads; the client then does not close it
            (nor give it the TLS settings above).

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
        tls: bool = False,
        ca: str | os.PathLike[str] | None = None,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        timeout_s: float | None = 30.0,
        metadata: Sequence[tuple[str, str | bytes]] = (),
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        http_base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.http_base_url = http_base_url.rstrip("/") if http_base_url else None
        self._tls: ClientTLS | None = None
        if tls or ca is not None or cert is not None or key is not None:
            if credentials is not None:
                raise ValueError("pass either credentials or tls/ca/cert/key, not both")
            self._tls = ClientTLS(ca=_path(ca), cert=_path(cert), key=_path(key))
            credentials = self._tls.grpc_credentials()  # reads and checks the files now
        self._credentials = credentials
        self._api_key = api_key.strip() if api_key else None
        auth = [("authorization", f"Bearer {self._api_key}")] if self._api_key else []
        self._metadata = (*metadata, *auth)
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
        model: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> pb.ListJobsResponse:
        """Return one page of jobs, newest first.

        ``status`` filters by state: a ``JobState`` value, or a name the server accepts
        (``JOB_STATE_SUCCEEDED``, ``succeeded``). ``model`` keeps jobs of that model
        (``owner/name`` matches every version), ``created_after`` (inclusive) and
        ``created_before`` (exclusive) bound the creation time; aware datetimes. ``page_size``
        0 lets the server choose (50). Pass the response's ``next_page_token`` as
        ``page_token`` for the next page, with the same filters; it is empty on the last one.
        See :meth:`iter_jobs` to walk every page.
        """
        if isinstance(status, int):
            status = job_pb2.JobState.Name(status)
        request = pb.ListJobsRequest(
            status=status or "", model=model or "", page_size=page_size, page_token=page_token
        )
        if created_after is not None:
            request.created_after.FromDatetime(created_after)
        if created_before is not None:
            request.created_before.FromDatetime(created_before)
        return await self._call(self._get_stub().ListJobs, request)

    async def iter_jobs(
        self,
        status: str | job_pb2.JobState.ValueType | None = None,
        *,
        model: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 0,
    ) -> AsyncIterator[job_pb2.Job]:
        """Yield every job matching the filters (as :meth:`list`), newest first, fetching pages
        as needed."""
        token = ""
        while True:
            page = await self.list(
                status=status,
                model=model,
                created_after=created_after,
                created_before=created_before,
                page_size=page_size,
                page_token=token,
            )
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

    def _download_headers(self, url: str) -> dict[str, str]:
        """The API key goes only to the gateway the client was pointed at."""
        if not self._api_key or not self.http_base_url:
            return {}
        base, target = urlsplit(self.http_base_url), urlsplit(url)
        if (base.scheme, base.netloc) != (target.scheme, target.netloc):
            return {}
        return {"authorization": f"Bearer {self._api_key}"}

    async def _fetch(self, url: str, path: Path, *, limit: int) -> tuple[int, str]:
        """Stream ``url`` into ``path``; return the byte count and SHA-256 hex digest."""
        if self._http is None:
            verify = self._tls.ssl_context() if self._tls is not None else True
            self._http = httpx.AsyncClient(
                timeout=self.timeout_s, follow_redirects=True, verify=verify
            )
        shown = _redacted(url)
        sha = hashlib.sha256()
        size = 0
        try:
            async with self._http.stream(
                "GET", url, headers=self._download_headers(url)
            ) as response:
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


def _path(name: str | os.PathLike[str] | None) -> Path | None:
    return Path(name) if name is not None else None


def _redacted(url: str) -> str:
    """The URL without its query, for messages: a presigned S3 URL carries a credential there."""
    return urlsplit(url)._replace(query="", fragment="").geturl()
