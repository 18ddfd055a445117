"""The MediaGenerationService servicer: validation in, store and queue behind, protos out.

Errors: a :class:`mediagen.errors.MediagenError` becomes a rich ``google.rpc.Status`` (ErrorInfo,
BadRequest, RetryInfo, ...) through :func:`rpc_errors`; anything unexpected is logged and becomes
INTERNAL without leaking details. Every line a call addressed to one job (GetJob, WatchJob,
CancelJob) logs, an unexpected error's too, carries the job's id.

Tenancy: every method reads the caller from :func:`mediagen.auth.principal.current_principal`
(set by the auth interceptor; ANONYMOUS, an admin of the default tenant, when authentication is
off). Jobs are created in the caller's tenant and every read is limited to its
``tenant_scope``, so another tenant's id is NOT_FOUND just like an unknown one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_status import rpc_status

from mediagen.api.urls import resolve_job, resolve_media
from mediagen.api.watch_responses import SharedResponses
from mediagen.api.watch_sweep import WatchSweep
from mediagen.auth.principal import current_principal
from mediagen.config import Settings
from mediagen.errors import (
    FieldViolation,
    InvalidArgument,
    MediagenError,
    Unavailable,
    internal_status,
)
from mediagen.events.bus import EventBus, Subscription
from mediagen.jobs.listing import NO_FILTER, parse_filter
from mediagen.jobs.pagination import decode_token, encode_token
from mediagen.jobs.store import JobStore
from mediagen.jobs.validation import validate_generate
from mediagen.limits.quota import Quotas
from mediagen.logs import context as log_context
from mediagen.logs import request_ids
from mediagen.metrics import definitions as metrics
from mediagen.storage.base import Storage
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_PAGE_SIZE = 50
DEFAULT_PER_PAGE = 20
MAX_PAGE_SIZE = 1000

_TERMINAL = (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELED)
#: Requests whose ``id`` is a job's.
_ABOUT_A_JOB = (pb.GetJobRequest, pb.WatchJobRequest, pb.CancelJobRequest)


def _about(request: object) -> contextlib.AbstractContextManager[object]:
    """The log context of a call about one job: its id, when it is safe to write (the caller's
    text: one with spaces or newlines could forge a line); unknown ids too, to find the call."""
    job_id = request.id.strip() if isinstance(request, _ABOUT_A_JOB) else ""
    if job_id and request_ids.is_valid(job_id):
        return log_context.bound(job_id=job_id)
    return contextlib.nullcontext()


async def _abort(context: Context, error: MediagenError | None) -> None:
    status = error.to_status() if error is not None else internal_status()
    await context.abort_with_status(rpc_status.to_status(status))


def rpc_errors(
    method: Callable[[Any, _Req, Context], Awaitable[_Resp]],
) -> Callable[[Any, _Req, Context], Awaitable[_Resp]]:
    """Turn mediagen errors into rich gRPC statuses for a unary method."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: _Req, context: Context) -> _Resp:
        with _about(request):
            try:
                return await method(self, request, context)
            except MediagenError as exc:
                await _abort(context, exc)
            except Exception:
                log.exception("%s failed", method.__name__)
                await _abort(context, None)
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    return wrapper


def stream_errors(
    method: Callable[[Any, _Req, Context], AsyncIterator[_Resp]],
) -> Callable[[Any, _Req, Context], AsyncIterator[_Resp]]:
    """The same for a server-streaming method."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: _Req, context: Context) -> AsyncIterator[_Resp]:
        with _about(request):
            try:
                async for message in method(self, request, context):
                    yield message
            except MediagenError as exc:
                await _abort(context, exc)
            except Exception:
                log.exception("%s failed", method.__name__)
                await _abort(context, None)

    return wrapper


class MediaGenerationServicer(pb_grpc.MediaGenerationServiceServicer):
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        bus: EventBus,
        storage: Storage,
        enqueue: Callable[[str], Awaitable[None]],
        *,
        quotas: Quotas | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.storage = storage
        self.enqueue = enqueue
        #: Per-tenant limits (none unless configured).
        self.quotas = quotas or Quotas()
        #: Set when the server is stopping: open WatchJob streams end with UNAVAILABLE.
        self.closing = asyncio.Event()
        self._watchers = 0
        self._no_watchers = asyncio.Event()
        self._no_watchers.set()
        #: Wakes streams whose job has events no bus message announced.
        self.sweep = WatchSweep(store.latest_sequences, settings.watch_sweep_s)
        self.responses = SharedResponses(storage)

    async def close_streams(self, timeout_s: float) -> None:
        """End every open WatchJob stream (UNAVAILABLE, with where to resume) and wait up to
        ``timeout_s`` for them to go, so the server's stop does not have to cut them off."""
        self.closing.set()
        self.sweep.wake_all()  # each stream, woken, sees the server closing
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_watchers.wait(), timeout_s)

    @rpc_errors
    async def GenerateMedia(
        self, request: pb.GenerateMediaRequest, context: Context
    ) -> pb.GenerateMediaResponse:
        spec = validate_generate(
            request,
            default_model=self.settings.default_model,
            allowed_models=self.settings.models,
        )
        tenant = current_principal().tenant
        if spec.request_id is not None and self.quotas.limits_submissions:
            # An idempotent retry costs no quota: answer it before the limits are consulted.
            # (Without limits, store.create answers a repeated request_id itself.)
            existing = await self.store.find_by_request_id(tenant, spec.request_id)
            if existing is not None:
                return pb.GenerateMediaResponse(job=await resolve_job(existing, self.storage))
        await self.quotas.admit_submission(tenant, self.store.active_jobs)
        job, event = await self.store.create(
            spec, tenant=tenant, submit_request_id=log_context.current().request_id
        )
        if event is not None:
            with log_context.bound(job_id=job.id, tenant=tenant):
                await self.bus.publish(event)
                try:
                    # The wake-up carries this call's request id to the worker, as the row does.
                    await self.enqueue(job.id)
                except Exception as exc:  # persisted already: the reconciler will send it
                    log.warning("job=%s enqueue failed (%s); the reconciler retries", job.id, exc)
                metrics.JOBS_SUBMITTED.labels(job.model).inc()
                log.info("job=%s created model=%s", job.id, job.model)
        return pb.GenerateMediaResponse(job=await resolve_job(job, self.storage))

    @rpc_errors
    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        job = await self.store.get(_required_id(request.id), tenant=_scope())
        return pb.GetJobResponse(job=await resolve_job(job, self.storage))

    @rpc_errors
    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        scope = _scope()
        violations: list[FieldViolation] = []
        try:
            where = parse_filter(request)
        except InvalidArgument as exc:  # reported with the paging fields' problems, all at once
            violations.extend(exc.violations)
            where = NO_FILTER
        if request.page_size < 0:
            violations.append(FieldViolation("page_size", "must not be negative"))
        if request.page < 0:
            violations.append(FieldViolation("page", "must not be negative"))
        if not 0 <= request.per_page <= MAX_PAGE_SIZE:
            violations.append(FieldViolation("per_page", f"must be between 0 and {MAX_PAGE_SIZE}"))
        offset_paging = request.page > 0 or request.per_page > 0
        if offset_paging and request.page_token:
            violations.append(
                FieldViolation("page_token", "cannot be combined with page / per_page")
            )
        if violations:
            raise InvalidArgument(violations)

        if offset_paging:
            per_page = request.per_page or DEFAULT_PER_PAGE
            page = await self.store.list_jobs(
                tenant=scope,
                where=where,
                limit=per_page,
                offset=(max(request.page, 1) - 1) * per_page,
            )
            next_token = ""
        else:
            cursor = (
                decode_token(
                    request.page_token,
                    self.settings.secret_key,
                    filter_key=where.key(),
                    tenant_scope=scope,
                )
                if request.page_token
                else None
            )
            limit = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            page = await self.store.list_jobs(tenant=scope, where=where, limit=limit, cursor=cursor)
            next_token = (
                encode_token(page.next_cursor, self.settings.secret_key) if page.next_cursor else ""
            )
        jobs = [await resolve_job(job, self.storage) for job in page.jobs]
        return pb.ListJobsResponse(
            jobs=jobs, next_page_token=next_token, total_size=page.total_size
        )

    @stream_errors
    async def WatchJob(
        self, request: pb.WatchJobRequest, context: Context
    ) -> AsyncIterator[pb.WatchJobResponse]:
        job_id = _required_id(request.id)
        if request.after_sequence < 0:
            raise InvalidArgument([FieldViolation("after_sequence", "must not be negative")])
        last = request.after_sequence
        scope = _scope()
        # Before subscribing or replaying anything: another tenant's job is simply not found.
        await self.store.get(job_id, tenant=scope)
        with self.quotas.watching(current_principal().tenant):
            self._watchers += 1
            self._no_watchers.clear()
            metrics.WATCH_STREAMS.inc()
            try:
                async for response in self._watch(job_id, last, scope):
                    metrics.WATCH_EVENTS.inc()
                    yield response
            finally:
                metrics.WATCH_STREAMS.dec()
                self._watchers -= 1
                if not self._watchers:
                    self._no_watchers.set()

    async def _watch(
        self, job_id: str, last: int, scope: str | None
    ) -> AsyncIterator[pb.WatchJobResponse]:
        # Subscribe first, then read the store: nothing published in between is missed.
        async with self.bus.subscribe(job_id) as subscription:
            with self.sweep.watching(job_id, subscription, last) as watch:
                backlog = await self.store.events_after(job_id, last, tenant=scope)
                while True:
                    for event in backlog:
                        if event.sequence <= last:
                            continue  # already sent (the bus repeats what the store returned)
                        last = watch.last = event.sequence
                        # Built once for every stream of this event in the process.
                        yield await self.responses.response(event)
                        if event.job.status in _TERMINAL:
                            return
                    finished = not backlog and (
                        (await self.store.get(job_id, tenant=scope)).status in _TERMINAL
                    )
                    if finished:
                        # Finished: its final event is committed with it, so one more read
                        # finds whatever the caller has not seen yet; nothing: it saw the end.
                        backlog = await self.store.events_after(job_id, last, tenant=scope)
                        if not backlog:
                            return
                        continue
                    backlog = await self._next_events(job_id, last, scope, subscription)

    async def _next_events(
        self, job_id: str, last: int, scope: str | None, subscription: Subscription
    ) -> list[job_pb2.JobEvent]:
        """The next events after ``last``: from the bus when it delivers the very next one,
        else (a jump in the sequence, or word from the bus that it may have lost some) from the
        store. A quiet stream reads nothing. Ends the stream with UNAVAILABLE as soon as the
        server starts shutting down (which wakes every subscription), telling the client where
        to resume."""
        # One waiter, the subscription itself: no task or asyncio.wait per event.
        self._unless_closing(last)
        event = await subscription.get()
        self._unless_closing(last)
        if event is not None and event.sequence <= last + 1:
            return [event]
        return await self.store.events_after(job_id, last, tenant=scope)

    def _unless_closing(self, last: int) -> None:
        if self.closing.is_set():
            raise Unavailable(
                f"server shutting down; reconnect with after_sequence={last}", retry_after_s=1.0
            )

    @rpc_errors
    async def GetMedia(self, request: pb.GetMediaRequest, context: Context) -> pb.GetMediaResponse:
        media = await self.store.get_media(_required_id(request.id), tenant=_scope())
        return pb.GetMediaResponse(media=await resolve_media(media, self.storage))

    @rpc_errors
    async def CancelJob(
        self, request: pb.CancelJobRequest, context: Context
    ) -> pb.CancelJobResponse:
        job, event = await self.store.cancel(_required_id(request.id), tenant=_scope())
        if event is not None:
            await self.bus.publish(event)
            if job.status == job_pb2.JOB_STATE_CANCELED:  # was PENDING: no worker will finish it
                metrics.JOBS_FINISHED.labels("canceled", job.model).inc()
            now = job_pb2.JobState.Name(job.status)
            log.info("job=%s cancel requested (now %s)", job.id, now)
        return pb.CancelJobResponse(job=await resolve_job(job, self.storage))


def _scope() -> str | None:
    """The tenant the caller's reads are limited to (None: an admin, every tenant)."""
    return current_principal().tenant_scope


def _required_id(value: str) -> str:
    if not value.strip():
        raise InvalidArgument([FieldViolation("id", "is required", "REQUIRED")])
    if "\x00" in value:
        # No id holds one, and PostgreSQL refuses NUL in any text parameter: without this the
        # lookup fails in the driver and the caller's typo becomes INTERNAL.
        raise InvalidArgument([FieldViolation("id", "must not contain NUL (U+0000)")])
    return value.strip()
