"""The job runner: one attempt of one job, in named steps.

    claim ─▶ predict (resume the stored prediction, recover the one an unanswered create may
             have made, or create one and store its id first)
          ─▶ poll (progress events from the logs; cancel upstream when asked)
          ─▶ store outputs (streamed into storage) ─▶ media rows + SUCCEEDED in one transaction

A create without a definite answer (a 5xx, a timeout, a dropped connection) may still have made
a prediction: the next attempt looks for it by the marker the create carried before it creates
again, and adopts it only if no other job holds it (docs/predictions.md).

Failures: transient ones (network, 5xx, 429, storage hiccups, timeouts) send the job back to
PENDING with a jittered exponential delay (honouring Retry-After) until ``max_attempts``;
permanent ones (the model failed, bad input, output too large) fail the job. A lost lease stops
the attempt without writing anything, with one warning naming who has the job now. On shutdown a
running attempt hands its job back at once, keeping the prediction for the next worker to resume
(one INFO line: the end of a delivery, not an error).

The lease is renewed in the background until the attempt's final write, never beside it: a
renewal racing a finished job would report a lease "lost" to the job's own end.

A completion webhook (a settled notice from the gateway, :mod:`mediagen.events.settled`) naming
the attempt's own prediction cuts the wait before the next poll short; the worker then reads
the prediction itself rather than trusting the webhook's body. With MEDIAGEN_WEBHOOK_URL set,
webhooks are expected and polling slows to a jittered fallback that keeps within the provider's
request budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from mediagen.backoff import retry_delay
from mediagen.config import Settings
from mediagen.errors import DOMAIN, Unavailable
from mediagen.events.bus import EventBus
from mediagen.events.settled import SettledNotices
from mediagen.fetching.policy import TOO_LARGE, TOO_MANY_OUTPUTS
from mediagen.jobs.progress import ProgressTracker
from mediagen.jobs.store import ClaimedJob, JobStore, LeaseLost, NewMedia, PredictionOwned
from mediagen.logs.context import bound
from mediagen.media.inspect import OutputTooLarge, inspect_stream
from mediagen.metrics import definitions as metrics
from mediagen.providers.base import Prediction, PredictionStatus, Provider, ProviderError
from mediagen.providers.marker import Marker
from mediagen.providers.rates import poll_spacing_s, provider_rates
from mediagen.redaction import clean_upstream
from mediagen.storage.base import Storage, StorageError
from mediagen.v1 import job_pb2

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Consecutive failed polls tolerated before the attempt gives up (and retries later).
MAX_POLL_ERRORS = 5
#: Smallest progress rise worth an event.
PROGRESS_STEP = 0.01
#: A job's error message is cut here (upstream parts are already cut shorter, and redacted).
ERROR_MESSAGE_CHARS = 4096
#: After the grace period, how long cancelled attempts get to hand their jobs back.
HAND_BACK_S = 5.0

#: Allowance for the provider's clock differing from ours when searching by creation time.
CLOCK_SKEW_S = 5.0
#: The fallback poll varies this much either way, so predictions started together spread out.
FALLBACK_JITTER = 0.2


class _Transient(Exception):
    """This attempt failed but another may succeed."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        keep_prediction: bool = True,
        code: int = code_pb2.UNAVAILABLE,
        reason: str | None = None,
        kind: str = "provider",
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.keep_prediction = keep_prediction
        self.code = code
        self.reason = reason
        #: Why, in one word, for the retries metric: provider, throttled, storage, timeout,
        #: database or internal.
        self.kind = kind


class _Permanent(Exception):
    """The job cannot succeed."""

    def __init__(
        self, message: str, *, code: int = code_pb2.ABORTED, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class _CancelRequested(Exception):
    """A caller cancelled the job while its outputs were being copied."""


def error_status(code: int, message: str, reason: str | None = None) -> status_pb2.Status:
    """A job's error: the message redacted and bounded (parts of it came from upstream), with
    an ErrorInfo naming ``reason`` when there is one."""
    status = status_pb2.Status(code=code, message=clean_upstream(message, ERROR_MESSAGE_CHARS))
    if reason is not None:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN))
        status.details.append(detail)
    return status


def worker_id() -> str:
    """A lease owner name unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _Attempt:
    job: ClaimedJob
    cancel: asyncio.Event
    started: float
    lease: _LeaseKeeper | None = None
    #: Predictions a webhook said have ended, not read since; ``news`` is set on each.
    settled: set[str] = field(default_factory=set)
    news: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def lost(self) -> bool:
        """Whether a renewal found the lease gone (the keeper then cancelled the attempt)."""
        return self.lease is not None and self.lease.lost

    async def end_lease(self) -> None:
        """Stop renewing before a final write (raises LeaseLost if it was lost meanwhile)."""
        if self.lease is not None and await self.lease.end():
            raise LeaseLost(self.job.id)


class _LeaseKeeper:
    """Renews one attempt's lease every third of its length until :meth:`end`.

    A renewal that finds the lease gone calls ``on_lost`` (the attempt's cancel), unless the
    attempt is already ending; :meth:`end` waits out a renewal in flight, so a renewal and the
    attempt's final write never overlap. Until the first renewal is due there is only a timer:
    most attempts end before it, and a task per attempt would cost them more than the renewal.
    """

    def __init__(
        self,
        store: JobStore,
        attempt: _Attempt,
        lease_s: float,
        on_lost: Callable[[], object],
    ) -> None:
        self._store = store
        self._attempt = attempt
        self._lease_s = lease_s
        self._on_lost = on_lost
        self._ending = asyncio.Event()
        self.lost = False
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(lease_s / 3, self._start)

    def _start(self) -> None:
        self._task = asyncio.create_task(self._renew(), name=f"lease {self._attempt.job.id}")

    async def _renew(self) -> None:
        job = self._attempt.job
        while not self._ending.is_set():  # an end may come between the timer and this task
            try:
                if await self._store.renew(job.id, job.owner, self._lease_s):
                    self._attempt.cancel.set()
            except LeaseLost:
                self.lost = True
                if not self._ending.is_set():
                    self._on_lost()
                return
            except Exception as exc:  # database hiccup: try again at the next tick
                log.warning("job=%s lease renewal failed: %s", job.id, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ending.wait(), self._lease_s / 3)

    async def end(self) -> bool:
        """Stop renewing; returns whether the lease was found lost."""
        self._ending.set()
        self._timer.cancel()
        if self._task is not None:
            # A cancel of the caller must not cut a renewal short.
            await asyncio.shield(self._task)
        return self.lost


class JobRunner:
    """Runs jobs for one worker process."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        bus: EventBus,
        provider: Provider,
        storage: Storage,
        *,
        requeue: Callable[[str], Awaitable[None]],
        owner: str | None = None,
        notices: SettledNotices | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.provider = provider
        self.storage = storage
        self.owner = owner or worker_id()
        #: Webhooks' word that a prediction ended; None: polling alone.
        self.notices = notices
        self._requeue = requeue
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._draining = False
        self._rates = provider_rates(settings)
        metrics.WORKER_CONCURRENCY.set(settings.worker_concurrency)

    async def handle(self, job_id: str, ack: Callable[[], Awaitable[None]] | None = None) -> None:
        """Entry point of the queue task: claim the job and run an attempt if it is ours."""
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            async with self._slots:
                try:
                    claimed = await self.store.claim(job_id, self.owner, self.settings.lease_s)
                    if claimed is not None:
                        # Watchers hear of the claim first: the queue's ack can wait a publish.
                        await self.bus.publish(claimed[1])
                finally:
                    await self._ack(job_id, ack)
                if claimed is None:
                    log.debug("job=%s not claimable (taken, finished or not due)", job_id)
                    return
                job, event = claimed
                # The whole attempt (provider and storage calls included) logs under the job's
                # own request id: a wake-up from the reconciler carries none.
                with bound(
                    request_id=job.submit_request_id, tenant=job.tenant, attempt=job.attempt
                ):
                    log.info("job=%s pending→running try=%d", job.id, job.attempt)
                    _observe_claim(job, event)
                    with metrics.WORKER_IN_FLIGHT.track_inprogress():
                        await self._run(job)
        except asyncio.CancelledError:
            if not self._draining:
                raise
            # Our own drain stopped it and the job is handed back: the delivery is over, which
            # is no error for the queue to report.
            task.uncancel()
        finally:
            self._running.discard(task)

    @staticmethod
    async def _ack(job_id: str, ack: Callable[[], Awaitable[None]] | None) -> None:
        """Acknowledge the wake-up; a failure is only logged. The claim, not the message, says
        who runs the job, so a claimed job runs even if its ack is lost (a redelivery then
        finds it taken)."""
        if ack is None:
            return
        try:
            await ack()
        except Exception as exc:  # the queue is unreachable: nothing to undo
            log.warning("job=%s queue ack failed (%s); the claim stands", job_id, exc)

    async def drain(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for running attempts, then cancel the rest (they hand their
        jobs back, for up to :data:`HAND_BACK_S`)."""
        self._draining = True
        for timer in self._timers.values():
            timer.cancel()
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=HAND_BACK_S)

    # ---- one attempt ----------------------------------------------------------------------

    async def _run(self, job: ClaimedJob) -> None:
        attempt = _Attempt(job, asyncio.Event(), time.monotonic())
        if job.cancel_requested:
            attempt.cancel.set()
        try:
            if job.attempt > self.settings.max_attempts:
                await self._fail(
                    job, code_pb2.ABORTED, "gave up: every attempt failed or timed out"
                )
                return
            await self._outcome(attempt)
        except LeaseLost:
            await self._lost(job)
        except asyncio.CancelledError:
            if not attempt.lost:
                await self._hand_back(job)
                raise
            # The lease keeper cancelled the attempt: nothing is ours to hand back.
            await self._lost(job)
            current = asyncio.current_task()
            if self._draining or current is None:
                raise
            current.uncancel()

    async def _outcome(self, attempt: _Attempt) -> None:
        """Run the attempt and record how it ended (LeaseLost and cancellation propagate)."""
        job = attempt.job
        try:
            async with (
                self._keep_lease(attempt),
                self._watch_cancel(attempt),
                self._watch_settled(attempt),
                # A deadline on this task, not wait_for's task of its own per attempt.
                asyncio.timeout(self.settings.job_timeout_s),
            ):
                await self._attempt(attempt)
        except LeaseLost:
            raise
        except TimeoutError:
            await self._retry(
                job,
                _Transient("attempt timed out", code=code_pb2.DEADLINE_EXCEEDED, kind="timeout"),
            )
        except _Transient as exc:
            await self._retry(job, exc)
        except _Permanent as exc:
            await self._fail(job, exc.code, str(exc), exc.reason)
        except Unavailable as exc:  # the database, down or busy: not a bug, retry like one
            await self._retry(
                job,
                _Transient(f"database: {exc}", retry_after_s=exc.retry_after_s, kind="database"),
            )
        except Exception as exc:  # a bug must not kill the worker; the job retries, bounded
            log.exception("job=%s attempt crashed", job.id)
            await self._retry(
                job, _Transient(f"internal error: {type(exc).__name__}", kind="internal")
            )
        finally:
            metrics.JOB_RUNNING.labels(job.model).observe(time.monotonic() - attempt.started)

    async def _lost(self, job: ClaimedJob) -> None:
        """The one warning about a lost lease, naming who has the job now."""
        metrics.LEASES_LOST.inc()
        try:
            state, owner = await self.store.lease_holder(job.id)
            now = f"held by {owner}" if owner else f"{state}, held by no worker"
        except Exception as exc:  # the warning matters more than its detail
            now = f"holder unknown: {exc}"
        log.warning("job=%s lease lost; this worker stops touching it (now %s)", job.id, now)

    async def _hand_back(self, job: ClaimedJob) -> None:
        """The worker is stopping: the job goes back to PENDING, keeping its prediction."""
        try:
            event = await self._shielded(self.store.release(job.id, self.owner))
        except Exception as exc:  # the database is unreachable: the lease runs out instead
            log.warning(
                "job=%s not handed back (%s); it returns when its lease expires", job.id, exc
            )
            return
        if event is None:
            return  # it finished (or its lease was lost) meanwhile: nothing to hand back
        await self.bus.publish(event)
        log.info("job=%s running→pending (worker stopping)", job.id)

    async def _attempt(self, attempt: _Attempt) -> None:
        job = attempt.job
        if attempt.cancel.is_set() and job.prediction_requested_at is None:
            # Cancelled before any prediction was asked for: nothing to start, nothing to pay.
            await self._finish_cancel(attempt, None)
            return
        started = await self._start_prediction(attempt)
        if started is None:
            # Cancelled, and the unanswered create left no prediction to cancel.
            await self._finish_cancel(attempt, None)
            return
        prediction = await self._poll(attempt, started)
        status = prediction.status
        if attempt.cancel.is_set():
            # Cancelled by a caller: the job ends CANCELED even if the prediction got done first.
            await self._finish_cancel(attempt, prediction)
        elif status is PredictionStatus.SUCCEEDED:
            await self._store_outputs(attempt, prediction)
        elif status is PredictionStatus.FAILED:
            raise _Permanent(f"the model failed: {prediction.error or 'no error given'}")
        elif status is PredictionStatus.CANCELED:
            raise _Permanent("the prediction was canceled at the provider", code=code_pb2.CANCELLED)
        else:  # aborted: its deadline passed before it started; unbilled, so start afresh
            raise _Transient("the provider aborted the prediction", keep_prediction=False)

    async def _start_prediction(self, attempt: _Attempt) -> Prediction | None:
        """Resume the job's prediction, recover the one an unanswered create made, or create one,
        storing its id before anything else. None: cancelled, and there is nothing to follow."""
        job = attempt.job
        try:
            if job.prediction_id is not None:
                return await self._resume(job, job.prediction_id)
            if job.prediction_requested_at is not None:
                # A create was sent but its id never stored (crash, or no definite answer).
                found = await self._recover(attempt, job.prediction_requested_at)
                metrics.RECOVERIES.labels("found" if found is not None else "none").inc()
                if found is not None or attempt.cancel.is_set():
                    return found
            return await self._create(attempt)
        except ProviderError as exc:
            raise self._translate(exc) from exc

    async def _create(self, attempt: _Attempt) -> Prediction:
        job = attempt.job

        async def requested() -> None:
            # After any wait for the request budget: the look-up window starts at the send.
            await self._shielded(
                self.store.mark_prediction_requested(job.id, self.owner, job.attempt)
            )

        try:
            prediction = await self.provider.create(
                job.model,
                job.model_input,
                marker=Marker(job.id, job.attempt),
                before_send=requested,
            )
        except ProviderError as exc:
            if not exc.ambiguous:  # a definite answer: nothing was made
                await self._shielded(self.store.set_prediction(job.id, self.owner, None))
            raise
        try:
            await self._shielded(self.store.set_prediction(job.id, self.owner, prediction.id))
        except PredictionOwned as exc:
            # Another job's: not ours to follow or cancel. Whatever our create made carries our
            # marker, and the next attempt looks for it before creating again.
            raise _Transient(
                f"the create answered with prediction {exc.prediction_id}, which another job holds"
            ) from exc
        log.info("job=%s prediction=%s created", job.id, prediction.id)
        return prediction

    async def _recover(self, attempt: _Attempt, requested_at: datetime) -> Prediction | None:
        """The prediction an unanswered create made, found by the marker it carried; None if
        there is none. Nothing found counts only ``ambiguous_settle_s`` after that create (a slow
        provider may make it late): until then the attempt waits and looks once more."""
        job = attempt.job
        if job.prediction_attempt is None:
            log.warning("job=%s create from before markers: it cannot be looked for", job.id)
            return None
        marker = Marker(job.id, job.prediction_attempt)
        settled_at = requested_at + timedelta(seconds=self.settings.ambiguous_settle_s)
        while True:
            found = await self._look_up(job, marker, requested_at, settled_at)
            if found is not None:
                return found
            wait_s = (settled_at - datetime.now(UTC)).total_seconds()
            if wait_s <= 0:
                return None
            log.info(
                "job=%s no prediction of try=%d yet; looking again in %.1fs",
                job.id,
                marker.attempt,
                wait_s,
            )
            await asyncio.sleep(wait_s)

    async def _look_up(
        self, job: ClaimedJob, marker: Marker, requested_at: datetime, settled_at: datetime
    ) -> Prediction | None:
        """Adopt the newest prediction carrying ``marker`` that no other job holds."""
        skew = timedelta(seconds=CLOCK_SKEW_S)
        try:
            candidates = await self.provider.find_marked(
                marker, created_after=requested_at - skew, created_before=settled_at + skew
            )
        except ProviderError as exc:
            # Not knowing is a reason neither to fail the job nor to create again: retry later.
            raise _Transient(
                f"looking for the prediction of an unanswered create failed: {exc}",
                retry_after_s=exc.retry_after_s,
            ) from exc
        owners = await self.store.prediction_owners([c.id for c in candidates])
        for candidate in candidates:
            holder = owners.get(candidate.id, job.id)
            try:
                if holder != job.id:
                    raise PredictionOwned(candidate.id)
                await self._shielded(self.store.set_prediction(job.id, self.owner, candidate.id))
            except PredictionOwned:
                log.warning("job=%s skips prediction=%s: another job has it", job.id, candidate.id)
                continue
            log.info("job=%s recovered prediction=%s", job.id, candidate.id)
            return candidate
        return None

    async def _resume(self, job: ClaimedJob, prediction_id: str) -> Prediction:
        try:
            return await self.provider.get(prediction_id)
        except ProviderError as exc:
            if exc.status != 404:
                raise
            # Gone at the provider (expired, or an emulator that restarted): it can never be
            # polled again, so the next attempt starts a new one.
            raise _Transient(
                f"prediction {prediction_id} no longer exists at the provider",
                keep_prediction=False,
            ) from exc

    async def _poll(self, attempt: _Attempt, prediction: Prediction) -> Prediction:
        """Follow the prediction to a final state, recording progress; cancel when asked."""
        job = attempt.job
        if prediction.status.terminal:
            # Finished when first seen (the create answered with its end, or a resumed one):
            # the job's next event is its final one, so a progress event would tell a watcher
            # nothing and cost a transaction.
            return prediction
        tracker = ProgressTracker()
        reported = 0.0
        delay = self._poll_delay(None)
        errors = 0
        cancel_sent = False
        while True:
            tracker = tracker.observe(prediction.logs)
            if tracker.value >= reported + PROGRESS_STEP:
                reported = tracker.value
                await self._record_progress(job, reported)
            if prediction.status.terminal:
                return prediction
            if attempt.cancel.is_set():
                if not cancel_sent:
                    cancel_sent = True
                    with contextlib.suppress(ProviderError):  # best effort; keep polling anyway
                        prediction = await self.provider.cancel(prediction.id)
                        continue
                await self._wait_for_news(
                    attempt, prediction.id, self._poll_wait_s(delay), until_cancel=False
                )
            else:
                await self._wait_for_news(
                    attempt, prediction.id, self._poll_wait_s(delay), until_cancel=True
                )
            delay = self._poll_delay(delay)
            try:
                prediction = await self.provider.get(prediction.id)
                errors = 0
                # One line per poll: DEBUG, so that INFO keeps to the job's story.
                log.debug("job=%s prediction=%s %s", job.id, prediction.id, prediction.status.value)
            except ProviderError as exc:
                errors += 1
                if not exc.transient or errors >= MAX_POLL_ERRORS:
                    raise self._translate(exc) from exc
                log.warning("job=%s poll failed (%s); retrying", job.id, clean_upstream(str(exc)))

    def _poll_delay(self, previous: float | None) -> float:
        """The wait before the next poll: the jittered fallback when webhooks are expected,
        else backing off from ``poll_interval_s`` to ``poll_interval_max_s``."""
        settings = self.settings
        if settings.webhooks_expected:
            spread = random.uniform(1 - FALLBACK_JITTER, 1 + FALLBACK_JITTER)
            return settings.webhook_fallback_poll_s * spread
        if previous is None:
            return settings.poll_interval_s
        return min(previous * 1.5, settings.poll_interval_max_s)

    @staticmethod
    async def _wait_for_news(
        attempt: _Attempt, prediction_id: str, delay_s: float, *, until_cancel: bool
    ) -> None:
        """Wait ``delay_s``, cut short by a webhook saying ``prediction_id`` ended or (with
        ``until_cancel``) by a cancel request."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay_s
        while prediction_id not in attempt.settled:
            left = deadline - loop.time()
            if left <= 0 or (until_cancel and attempt.cancel.is_set()):
                return
            attempt.news.clear()
            waits = [attempt.news.wait()]
            if until_cancel:
                waits.append(attempt.cancel.wait())
            await _first_of(waits, left)
        attempt.settled.discard(prediction_id)  # read now; a later notice may wake us again

    def _poll_wait_s(self, backoff_s: float) -> float:
        """The backed-off poll interval, stretched so this worker's polls of every job it has
        in flight fit the request budget (the shared limiter is the hard cap across workers)."""
        in_flight = min(len(self._running), self.settings.worker_concurrency)
        return max(backoff_s, poll_spacing_s(in_flight, self._rates))

    async def _record_progress(self, job: ClaimedJob, value: float) -> None:
        event = await self.store.progress(job.id, self.owner, round(value, 4))
        if event is not None:
            await self.bus.publish(event)

    async def _store_outputs(self, attempt: _Attempt, prediction: Prediction) -> None:
        job = attempt.job
        urls = prediction.output_urls
        if not urls:
            raise _Permanent("the model succeeded but returned no output")
        if len(urls) > self.settings.max_outputs:
            raise _Permanent(
                f"the model returned {len(urls)} outputs; at most "
                f"{self.settings.max_outputs} are accepted (MEDIAGEN_MAX_OUTPUTS)",
                code=code_pb2.OUT_OF_RANGE,
                reason=TOO_MANY_OUTPUTS,
            )
        stored: list[str] = []
        try:
            media = await self._unless_cancelled(attempt, self._copy_outputs(job, urls, stored))
        except _CancelRequested:
            await self._shielded(self._discard(job, stored))
            await self._finish_cancel(attempt, prediction)
            return
        except _Permanent:
            # A job that fails keeps no media. (A retry overwrites the same keys instead; after a
            # lost lease they may already be another worker's.)
            await self._shielded(self._discard(job, stored))
            raise
        await attempt.end_lease()
        event = await self._shielded(self.store.succeed(job.id, self.owner, media))
        metrics.JOBS_FINISHED.labels("succeeded", job.model).inc()
        await self.bus.publish(event)
        log.info(
            "job=%s running→succeeded try=%d %.2fs",
            job.id,
            job.attempt,
            time.monotonic() - attempt.started,
        )

    async def _copy_outputs(
        self, job: ClaimedJob, urls: tuple[str, ...], stored: list[str]
    ) -> list[NewMedia]:
        media: list[NewMedia] = []
        for position, url in enumerate(urls):
            item = await self._copy_output(job, position, url)
            stored.append(item.storage_key)
            media.append(item)
        return media

    @staticmethod
    async def _unless_cancelled(attempt: _Attempt, work: Awaitable[_T]) -> _T:
        """``work``'s result, or :class:`_CancelRequested` as soon as the job is cancelled
        (``work`` is then cancelled: a partial object is never kept by a backend)."""
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(attempt.cancel.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
                # Let it unwind (abort the upload, remove the temporary file) before going on.
                await asyncio.wait({task})
        if task.cancelled() or attempt.cancel.is_set():
            if not task.cancelled():
                task.exception()  # retrieved: a copy that failed as the cancel came is moot
            # A cancel wins even over a copy that finished at the same moment.
            raise _CancelRequested()
        return task.result()

    async def _discard(self, job: ClaimedJob, keys: list[str]) -> None:
        for key in keys:
            try:
                await self.storage.delete(key)
            except StorageError as exc:  # best effort: an orphan file is not worth a failure
                log.warning("job=%s could not remove %s: %s", job.id, key, exc)

    async def _copy_output(self, job: ClaimedJob, position: int, url: str) -> NewMedia:
        """Stream one output from the provider into storage, inspecting it on the way."""
        try:
            inspected = await inspect_stream(
                self.provider.download(url), max_bytes=self.settings.max_output_bytes
            )
            key = f"{job.id}/{position}.{inspected.format.extension}"
            stored = await self.storage.put_stream(
                key, inspected, content_type=inspected.format.mime_type
            )
            info = inspected.result()
            log.info(
                "job=%s stored %s: %d bytes, %s", job.id, key, stored.size_bytes, info.mime_type
            )
        except OutputTooLarge as exc:
            raise _Permanent(str(exc), code=code_pb2.OUT_OF_RANGE, reason=TOO_LARGE) from exc
        except ProviderError as exc:
            raise self._translate(exc) from exc
        except StorageError as exc:
            if exc.transient:
                raise _Transient(f"storage: {exc}", kind="storage") from exc
            raise _Permanent(f"storage: {exc}", code=code_pb2.INTERNAL) from exc
        return NewMedia(
            position=position,
            kind=info.kind.value if info.kind else "",
            mime_type=info.mime_type,
            storage_key=key,
            width=info.width or 0,
            height=info.height or 0,
            size_bytes=stored.size_bytes,
            sha256=info.sha256,
        )

    async def _finish_cancel(self, attempt: _Attempt, prediction: Prediction | None) -> None:
        job = attempt.job
        if prediction is not None and not prediction.status.terminal:
            with contextlib.suppress(ProviderError):
                await self.provider.cancel(prediction.id)
        await attempt.end_lease()
        event = await self._shielded(self.store.finish_cancel(job.id, self.owner))
        metrics.JOBS_FINISHED.labels("canceled", job.model).inc()
        await self.bus.publish(event)
        log.info("job=%s running→canceled", job.id)

    # ---- outcomes -------------------------------------------------------------------------

    async def _retry(self, job: ClaimedJob, exc: _Transient) -> None:
        error = error_status(exc.code, str(exc), exc.reason)
        if job.attempt >= self.settings.max_attempts:
            await self._fail(
                job, exc.code, f"gave up after {job.attempt} attempts: {exc}", exc.reason
            )
            return
        delay = retry_delay(
            job.attempt,
            self.settings.retry_base_s,
            self.settings.retry_max_s,
            retry_after_s=exc.retry_after_s,
        )
        event = await self._shielded(
            self.store.retry(job.id, self.owner, error, delay, keep_prediction=exc.keep_prediction)
        )
        metrics.JOB_RETRIES.labels(exc.kind).inc()
        await self.bus.publish(event)
        log.info(
            "job=%s running→pending try=%d retry in %.1fs: %s",
            job.id,
            job.attempt,
            delay,
            error.message,
        )
        # Wake ourselves when it is due; the reconciler is the fallback if this process dies.
        self._timers[job.id] = asyncio.get_running_loop().call_later(delay, self._wake, job.id)

    def _wake(self, job_id: str) -> None:
        self._timers.pop(job_id, None)
        task = asyncio.ensure_future(self._requeue(job_id))
        task.add_done_callback(_log_failure)

    async def _fail(
        self, job: ClaimedJob, code: int, message: str, reason: str | None = None
    ) -> None:
        error = error_status(code, message, reason)
        event = await self._shielded(self.store.fail(job.id, self.owner, error))
        metrics.JOBS_FINISHED.labels("failed", job.model).inc()
        await self.bus.publish(event)
        log.info("job=%s running→failed try=%d: %s", job.id, job.attempt, error.message)

    @staticmethod
    def _translate(exc: ProviderError) -> Exception:
        if exc.transient:
            return _Transient(
                f"provider: {exc}",
                retry_after_s=exc.retry_after_s,
                reason=exc.reason,
                kind="throttled" if exc.status == 429 else "provider",
            )
        return _Permanent(f"provider: {exc}", code=code_pb2.FAILED_PRECONDITION, reason=exc.reason)

    # ---- lease and cancellation -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _keep_lease(self, attempt: _Attempt) -> AsyncIterator[None]:
        """Renew the lease in the background until the attempt ends; a lost lease cancels the
        attempt (``_run`` then says so, once)."""
        current = asyncio.current_task()
        assert current is not None
        attempt.lease = _LeaseKeeper(self.store, attempt, self.settings.lease_s, current.cancel)
        try:
            yield
        finally:
            await attempt.lease.end()

    @contextlib.asynccontextmanager
    async def _watch_cancel(self, attempt: _Attempt) -> AsyncIterator[None]:
        """Set ``attempt.cancel`` as soon as a CANCEL_REQUESTED event arrives on the bus (the
        lease renewal notices it too, more slowly, if the bus loses the message)."""
        async with self.bus.subscribe(attempt.job.id) as subscription:

            async def watch() -> None:
                while True:
                    event = await subscription.get()
                    if event is not None and event.job.cancel_requested:
                        attempt.cancel.set()
                        return

            async with _in_background(watch()):
                yield

    @contextlib.asynccontextmanager
    async def _watch_settled(self, attempt: _Attempt) -> AsyncIterator[None]:
        """Note each webhook's word that a prediction of this job ended. Any prediction id is
        noted, but only the attempt's own is ever read: a notice naming another changes
        nothing."""
        if self.notices is None:
            yield
            return
        async with self.notices.subscribe(attempt.job.id) as notices:

            async def watch() -> None:
                while True:
                    notice = await notices.get()
                    attempt.settled.add(notice.prediction_id)
                    attempt.news.set()

            async with _in_background(watch()):
                yield

    @staticmethod
    async def _shielded(write: Awaitable[_T]) -> _T:
        """Run a write that must land even if the attempt is being cancelled (arq's pattern).

        A cancel waits for the write to land, so nothing written after (the hand-back) can
        overtake it, and takes its outcome: a write that failed meanwhile (LeaseLost after a
        stolen lease) is no "exception never retrieved" for the event loop to report.
        """
        task = asyncio.ensure_future(write)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_retrieve)
            await asyncio.wait({task})
            raise


@contextlib.asynccontextmanager
async def _in_background(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``work`` while the context is open; cancel it at the end."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _first_of(waits: list[Coroutine[Any, Any, Any]], timeout_s: float) -> None:
    """Wait until one of ``waits`` is done or ``timeout_s`` passes; cancel the rest."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _retrieve(task: asyncio.Future[_T]) -> None:
    if not task.cancelled():
        task.exception()


def _observe_claim(job: ClaimedJob, event: job_pb2.JobEvent) -> None:
    """A first claim ends the time the job waited since it was submitted."""
    if job.attempt == 1 and event.job.HasField("start_time"):
        waited = event.job.start_time.ToDatetime() - event.job.create_time.ToDatetime()
        metrics.JOB_QUEUED.labels(job.model).observe(max(0.0, waited.total_seconds()))


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("re-enqueue failed (the reconciler will retry): %s", task.exception())
