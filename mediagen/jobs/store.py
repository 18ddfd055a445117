"""The job store: the source of truth for jobs, their media and their events.

Every state change is one conditional UPDATE (its WHERE clause is the transition's allowed source
states plus, for workers, "I still hold the lease") and appends a ``job_events`` row with the
next sequence number in the same transaction. Methods return the protos callers need; the event
each change produced is returned too, for the caller to publish after the commit.

Tenancy: the caller-facing methods take ``tenant``, the caller's scope: a tenant name, or None
for an admin (every tenant). Another tenant's job or media is :class:`JobNotFound` /
:class:`MediaNotFound` exactly as an unknown id is, so an id never confirms that it exists.
The worker and reconciler methods act on any job: they are not reached by callers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cachetools import TTLCache
from google.protobuf import json_format
from google.rpc import status_pb2
from sqlalchemy import (
    ColumnElement,
    Insert,
    Row,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, joinedload, selectinload

from mediagen.errors import JobAlreadyFinished, JobNotFound, MediaNotFound
from mediagen.jobs import convert
from mediagen.jobs.database import Database
from mediagen.jobs.listing import NO_FILTER, JobFilter
from mediagen.jobs.models import Base, JobEventRow, JobRow, MediaRow, ModelStatsRow
from mediagen.jobs.pagination import Cursor
from mediagen.jobs.states import JobState, Transition, next_state, sources
from mediagen.jobs.validation import JobSpec
from mediagen.limits.quota import ActiveJobs
from mediagen.v1 import job_pb2, media_pb2

#: The largest job error the store writes. Every job is read whole by GetJob, WatchJob and each
#: ListJobs page, so one unbounded error would make all of them fail (RESOURCE_EXHAUSTED); the
#: runner bounds messages well below this, and this refusal is the defence in depth.
MAX_ERROR_BYTES = 16 * 1024


class ErrorTooLarge(ValueError):
    """An error status bigger than :data:`MAX_ERROR_BYTES` was offered for storage."""


def _bounded_error(error: status_pb2.Status) -> bytes:
    data = error.SerializeToString()
    if len(data) > MAX_ERROR_BYTES:
        raise ErrorTooLarge(
            f"refusing to store a job error of {len(data)} bytes (limit {MAX_ERROR_BYTES})"
        )
    return data


EVENT_TYPES = {
    job_pb2.JOB_EVENT_TYPE_STATE_CHANGED: "state_changed",
    job_pb2.JOB_EVENT_TYPE_PROGRESS: "progress",
    job_pb2.JOB_EVENT_TYPE_CANCEL_REQUESTED: "cancel_requested",
}
_EVENT_TYPE_FROM_NAME = {name: value for value, name in EVENT_TYPES.items()}
#: Weight of the newest run in a model's mean run time.
_EWMA_WEIGHT = 0.3
#: How long a model's mean run time is reused before it is read again: it only feeds estimates,
#: and other processes' runs move it slowly (this process's own runs update it at once).
MODEL_STATS_TTL_S = 5.0
#: The most often one process writes a model's run times (:meth:`JobStore._record_run_time`).
RUN_TIMES_FLUSH_S = 1.0
#: The tables, for Core statements: the worker's writes build no ORM objects (one costs more
#: than the proto made from it) and take no ORM bulk path.
_JOBS = Base.metadata.tables[JobRow.__tablename__]
_MEDIA = Base.metadata.tables[MediaRow.__tablename__]
_STATS = Base.metadata.tables[ModelStatsRow.__tablename__]
_EVENTS = Base.metadata.tables[JobEventRow.__tablename__]
#: Plain table INSERTs with their values bound per call: compiled once, no ORM bulk path.
_INSERT_JOB = insert(_JOBS)
_INSERT_EVENT = insert(_EVENTS)
_INSERT_MEDIA = insert(_MEDIA)


def _insert_job_with_event() -> Insert:
    """PostgreSQL: ``WITH new_job AS (INSERT INTO jobs ...) INSERT INTO job_events SELECT ...``,
    one statement, so one round trip and atomic without a transaction around it. Every column
    is bound (the event's as ``event_<column>``): the SQL, and so the prepared statement, is the
    same on every call."""
    job_columns = [c for c in _JOBS.c if c.name not in _UNSET_ON_CREATE]
    new_job = (
        insert(_JOBS)
        .values({c.name: bindparam(c.name, type_=c.type) for c in job_columns})
        .returning(_JOBS.c.id)
        .cte("new_job")
    )
    # The job id comes from the CTE: the event's foreign key refers to a row this statement made.
    event_columns = ["sequence", "type", "time", "snapshot"]
    return insert(_EVENTS).from_select(
        ["job_id", *event_columns],
        select(
            new_job.c.id,
            *(bindparam(f"event_{name}", type_=_EVENTS.c[name].type) for name in event_columns),
        ),
    )


#: Columns a new job leaves NULL (the worker and the end of the job set them).
_UNSET_ON_CREATE = frozenset(
    {
        "error",
        "prediction_id",
        "prediction_requested_at",
        "prediction_attempt",
        "lease_owner",
        "lease_expires_at",
        "start_time",
        "complete_time",
    }
)
_INSERT_JOB_WITH_EVENT = _insert_job_with_event()


def utcnow() -> datetime:
    return datetime.now(UTC)


class LeaseLost(Exception):
    """The worker no longer holds the job: its lease expired and someone else claimed it, or the
    job finished another way. The worker must stop touching it."""


class PredictionOwned(Exception):
    """The prediction is already another job's: one prediction belongs to at most one job (the
    unique key on ``jobs.prediction_id`` refuses a second)."""

    def __init__(self, prediction_id: str) -> None:
        super().__init__(f"prediction {prediction_id} already belongs to another job")
        self.prediction_id = prediction_id


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs to run an attempt."""

    id: str
    tenant: str
    #: The request id of the call that submitted the job, if it had one.
    submit_request_id: str | None
    model: str
    model_input: dict[str, Any]
    attempt: int
    prediction_id: str | None
    prediction_requested_at: datetime | None
    #: The attempt that sent the create of ``prediction_requested_at`` (its marker's attempt).
    prediction_attempt: int | None
    cancel_requested: bool
    owner: str


@dataclass(frozen=True)
class NewMedia:
    """An output copied into storage, ready to be recorded."""

    position: int
    kind: str
    mime_type: str
    storage_key: str
    width: int
    height: int
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class _StoredMedia(NewMedia):
    """A media row as written (what its proto is made from)."""

    id: str
    job_id: str
    create_time: datetime


@dataclass(frozen=True)
class JobPage:
    jobs: list[job_pb2.Job]
    total_size: int
    #: Where the next page starts, or None when this page is the last.
    next_cursor: Cursor | None


def _claimable(now: datetime) -> ColumnElement[bool]:
    """PENDING and due, or RUNNING with an expired lease (its worker is gone)."""
    c = _JOBS.c
    return or_(
        and_(c.status == JobState.PENDING.value, c.next_attempt_at <= now),
        and_(c.status == JobState.RUNNING.value, c.lease_expires_at < now),
    )


def _targets(transition: Transition) -> list[tuple[JobState, list[str]]]:
    """The target states of ``transition``, each with the source states that lead to it."""
    by_target: dict[JobState, list[str]] = {}
    for source in sorted(sources(transition)):
        by_target.setdefault(next_state(source, transition), []).append(source.value)
    return list(by_target.items())


def _in_scope(column: InstrumentedAttribute[str], tenant: str | None) -> list[ColumnElement[bool]]:
    """The WHERE clause of a tenant scope: nothing for an admin (None)."""
    return [] if tenant is None else [column == tenant]


def _matching(where: JobFilter) -> list[ColumnElement[bool]]:
    """The WHERE clause of a listing's filter."""
    clauses: list[ColumnElement[bool]] = []
    if where.status is not None:
        clauses.append(JobRow.status == where.status.value)
    if where.model_has_version:
        clauses.append(JobRow.model == where.model)
    elif where.model:
        # Every version too; autoescape keeps the name's `_` from acting as a LIKE wildcard.
        clauses.append(
            or_(
                JobRow.model == where.model,
                JobRow.model.startswith(f"{where.model}:", autoescape=True),
            )
        )
    if where.created_after is not None:
        clauses.append(JobRow.create_time >= where.created_after)
    if where.created_before is not None:
        clauses.append(JobRow.create_time < where.created_before)
    return clauses


def _event_proto(row: JobEventRow) -> job_pb2.JobEvent:
    event = job_pb2.JobEvent(
        sequence=row.sequence,
        type=_EVENT_TYPE_FROM_NAME.get(row.type, job_pb2.JOB_EVENT_TYPE_UNSPECIFIED),
        job=job_pb2.Job.FromString(row.snapshot),
    )
    event.time.CopyFrom(convert.timestamp(row.time))
    return event


def _event_values(event: job_pb2.JobEvent, prefix: str = "") -> dict[str, Any]:
    """The ``job_events`` row of ``event``, its keys prefixed with ``prefix``."""
    values = {
        "job_id": event.job.id,
        "sequence": event.sequence,
        "type": EVENT_TYPES[event.type],
        "time": event.time.ToDatetime(UTC),
        "snapshot": event.job.SerializeToString(),
    }
    return {f"{prefix}{key}": value for key, value in values.items()}


class JobStore:
    """Jobs, media and events over a :class:`Database`."""

    def __init__(
        self,
        db: Database,
        *,
        estimate_default_s: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self._estimate_default_s = estimate_default_s
        self._clock = clock
        self._mean_run_cache: TTLCache[str, float | None] = TTLCache(1024, MODEL_STATS_TTL_S)
        #: Run times not yet written, and when each model's were last written (monotonic).
        self._run_times: dict[str, list[float]] = {}
        self._run_times_flushed: dict[str, float] = {}

    # ---- API side -------------------------------------------------------------------------

    async def create(
        self, spec: JobSpec, *, tenant: str, submit_request_id: str | None = None
    ) -> tuple[job_pb2.Job, job_pb2.JobEvent | None]:
        """Insert a PENDING job of ``tenant`` and its first event, made by the call with request
        id ``submit_request_id``. With a request_id the tenant already used, return that job
        instead (and no event)."""
        now = self._clock()
        mean_run_s = await self._cached_mean_run_s(spec.model)
        values: dict[str, Any] = dict(
            id=str(uuid.uuid4()),
            tenant=tenant,
            status=JobState.PENDING.value,
            prompt=spec.prompt,
            model=spec.model,
            parameters=json_format.MessageToDict(spec.parameters),
            model_input=spec.model_input,
            labels=spec.labels,
            request_id=spec.request_id,
            submit_request_id=submit_request_id,
            progress=0.0,
            attempt=0,
            cancel_requested=False,
            next_attempt_at=now,
            enqueued_at=now,
            last_sequence=1,
            create_time=now,
            update_time=now,
            estimated_completion_time=now + timedelta(seconds=mean_run_s),
        )
        event = job_pb2.JobEvent(
            sequence=1,
            type=job_pb2.JOB_EVENT_TYPE_STATE_CHANGED,
            job=convert.new_job_to_proto(values, spec.parameters),
        )
        event.time.CopyFrom(convert.timestamp(now))
        try:
            if self.db.postgres:
                # Job and event in one statement that commits by itself: one round trip.
                async with self.db.autocommit() as connection:
                    await connection.execute(
                        _INSERT_JOB_WITH_EVENT, {**values, **_event_values(event, "event_")}
                    )
            else:
                async with self.db.writing() as session:
                    await session.execute(_INSERT_JOB, values)
                    await session.execute(_INSERT_EVENT, _event_values(event))
        except IntegrityError:
            if spec.request_id is None:
                raise
            existing = await self.find_by_request_id(tenant, spec.request_id)
            if existing is None:
                raise
            return existing, None
        return event.job, event

    async def active_jobs(self, tenant: str) -> ActiveJobs:
        """How many of ``tenant``'s jobs are PENDING or RUNNING, and the earliest estimated end
        among them (one aggregate query)."""
        active = (JobState.PENDING.value, JobState.RUNNING.value)
        async with self.db.reading() as session:
            result = await session.execute(
                select(func.count(), func.min(JobRow.estimated_completion_time)).where(
                    JobRow.tenant == tenant, JobRow.status.in_(active)
                )
            )
            count, next_done_at = result.one()
        return ActiveJobs(int(count or 0), next_done_at)

    async def find_by_request_id(self, tenant: str, request_id: str) -> job_pb2.Job | None:
        """The job ``tenant``'s request_id made, if any (idempotent retries are answered with
        it)."""
        async with self.db.reading() as session:
            row = await session.scalar(
                select(JobRow)
                .where(JobRow.tenant == tenant, JobRow.request_id == request_id)
                .options(selectinload(JobRow.media))
            )
            return None if row is None else convert.job_to_proto(row, row.media)

    async def get(self, job_id: str, *, tenant: str | None) -> job_pb2.Job:
        """The job, if it is in ``tenant`` (any job for None); else JobNotFound."""
        async with self.db.reading() as session:
            # One query with the media joined in: every statement is a thread hop on SQLite.
            result = await session.execute(
                select(JobRow)
                .where(JobRow.id == job_id, *_in_scope(JobRow.tenant, tenant))
                .options(joinedload(JobRow.media))
            )
            row = result.unique().scalar_one_or_none()
            if row is None:
                raise JobNotFound(job_id)
            return convert.job_to_proto(row, row.media)

    async def get_media(self, media_id: str, *, tenant: str | None) -> media_pb2.Media:
        """The media, if it is in ``tenant`` (any for None); else MediaNotFound."""
        async with self.db.reading() as session:
            row = await session.scalar(
                select(MediaRow).where(MediaRow.id == media_id, *_in_scope(MediaRow.tenant, tenant))
            )
            if row is None:
                raise MediaNotFound(media_id)
            return convert.media_to_proto(row)

    async def list_jobs(
        self,
        *,
        tenant: str | None,
        where: JobFilter = NO_FILTER,
        limit: int,
        cursor: Cursor | None = None,
        offset: int = 0,
    ) -> JobPage:
        """Jobs of ``tenant`` (every tenant's for None) matching ``where``, newest first, after
        ``cursor`` (keyset paging) or from ``offset``. The next cursor is bound to the tenant
        and the filter."""
        filters = [*_in_scope(JobRow.tenant, tenant), *_matching(where)]
        async with self.db.reading() as session:
            total = await session.scalar(select(func.count()).select_from(JobRow).where(*filters))
            query = select(JobRow).where(*filters)
            if cursor is not None:
                query = query.where(
                    or_(
                        JobRow.create_time < cursor.create_time,
                        and_(JobRow.create_time == cursor.create_time, JobRow.id < cursor.job_id),
                    )
                )
            query = (
                query.order_by(JobRow.create_time.desc(), JobRow.id.desc())
                .offset(offset)
                .limit(limit + 1)
                .options(selectinload(JobRow.media))
            )
            rows = list((await session.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = Cursor(last.create_time, last.id, where.key(), tenant_scope=tenant)
        return JobPage([convert.job_to_proto(r, r.media) for r in rows], total or 0, next_cursor)

    async def events_after(
        self, job_id: str, after_sequence: int, *, tenant: str | None, limit: int = 500
    ) -> list[job_pb2.JobEvent]:
        """Persisted events with a larger sequence, oldest first; JobNotFound if no such job in
        ``tenant`` (any tenant for None)."""
        scope = _in_scope(JobRow.tenant, tenant)
        async with self.db.reading() as session:
            query = select(JobEventRow).where(
                JobEventRow.job_id == job_id, JobEventRow.sequence > after_sequence
            )
            if scope:
                query = query.join(JobRow, JobRow.id == JobEventRow.job_id).where(*scope)
            rows = (await session.scalars(query.order_by(JobEventRow.sequence).limit(limit))).all()
            if not rows and (
                await session.scalar(select(JobRow.id).where(JobRow.id == job_id, *scope)) is None
            ):
                raise JobNotFound(job_id)
            return [_event_proto(r) for r in rows]

    async def latest_sequences(self, job_ids: Sequence[str]) -> dict[str, int]:
        """The sequence of each job's newest event, for those of ``job_ids`` that exist (any
        tenant: the watch sweep only decides from it whom to wake)."""
        if not job_ids:
            return {}
        async with self.db.reading() as session:
            rows = await session.execute(
                select(JobRow.id, JobRow.last_sequence).where(JobRow.id.in_(list(job_ids)))
            )
            return {job_id: sequence for job_id, sequence in rows}

    async def cancel(
        self, job_id: str, *, tenant: str | None
    ) -> tuple[job_pb2.Job, job_pb2.JobEvent | None]:
        """CancelJob: PENDING ends CANCELED now; RUNNING gets ``cancel_requested`` for its worker;
        CANCELED is returned as is; SUCCEEDED and FAILED are JobAlreadyFinished. Another
        tenant's job is JobNotFound and is left untouched."""
        now = self._clock()
        scope = _in_scope(JobRow.tenant, tenant)
        async with self.db.writing() as session:
            changed = await self._transition(
                session,
                job_id,
                Transition.CANCEL,
                where=[JobRow.status == JobState.PENDING.value, *scope],
                values={"complete_time": now, "estimated_completion_time": None},
            )
            if changed is None:
                changed = await self._change(
                    session,
                    job_id,
                    job_pb2.JOB_EVENT_TYPE_CANCEL_REQUESTED,
                    where=[
                        JobRow.status == JobState.RUNNING.value,
                        JobRow.cancel_requested.is_(False),
                        *scope,
                    ],
                    values={"cancel_requested": True},
                )
        if changed is not None:
            _, event = changed
            return event.job, event
        job = await self.get(job_id, tenant=tenant)
        if job.status in (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED):
            state = job_pb2.JobState.Name(job.status).removeprefix("JOB_STATE_").lower()
            raise JobAlreadyFinished(f"job {job_id} already {state}", metadata={"id": job_id})
        return job, None

    # ---- worker side ----------------------------------------------------------------------

    async def claim(
        self, job_id: str, owner: str, lease_s: float
    ) -> tuple[ClaimedJob, job_pb2.JobEvent] | None:
        """Take the job for an attempt if it is PENDING and due, or RUNNING with an expired
        lease; None if someone else has it or it is finished (a duplicate delivery)."""
        c = _JOBS.c
        async with self.db.writing() as session:
            # The lease starts once we hold a connection: a wait for the pool must not eat it
            # (a lease born expired is claimable again at once, by a reconciler's wake-up).
            await session.connection()
            now = self._clock()
            # The model's mean run time comes with the model: one query for the estimate.
            found = (
                await session.execute(
                    select(c.model, _STATS.c.mean_run_s)
                    .outerjoin(_STATS, _STATS.c.model == c.model)
                    .where(c.id == job_id)
                )
            ).one_or_none()
            if found is None:
                return None
            mean_run_s = self._estimate_default_s if found[1] is None else float(found[1])
            changed = await self._transition(
                session,
                job_id,
                Transition.CLAIM,
                where=[_claimable(now)],
                values={
                    "lease_owner": owner,
                    "lease_expires_at": now + timedelta(seconds=lease_s),
                    "attempt": c.attempt + 1,
                    "start_time": func.coalesce(c.start_time, now),
                    "progress": 0.0,
                    "estimated_completion_time": now + timedelta(seconds=mean_run_s),
                },
            )
        if changed is None:
            return None
        row, event = changed
        claimed = ClaimedJob(
            id=row.id,
            tenant=row.tenant,
            submit_request_id=row.submit_request_id,
            model=row.model,
            model_input=dict(row.model_input),
            attempt=row.attempt,
            prediction_id=row.prediction_id,
            prediction_requested_at=row.prediction_requested_at,
            prediction_attempt=row.prediction_attempt,
            cancel_requested=row.cancel_requested,
            owner=owner,
        )
        return claimed, event

    async def renew(self, job_id: str, owner: str, lease_s: float) -> bool:
        """Extend the lease; returns whether a cancellation was requested. Raises LeaseLost."""
        async with self.db.autocommit() as connection:
            now = self._clock()  # after the wait for a connection, as in claim
            result = await connection.execute(
                update(_JOBS)
                .where(*self._held(job_id, owner))
                .values(lease_expires_at=now + timedelta(seconds=lease_s))
                .returning(_JOBS.c.cancel_requested)
            )
            requested = result.scalar_one_or_none()
        if requested is None:
            raise LeaseLost(job_id)
        return bool(requested)

    async def mark_prediction_requested(self, job_id: str, owner: str, attempt: int) -> datetime:
        """Record that attempt ``attempt`` is about to send a create (the id may never come
        back; the marker the create carries is made of the job id and that attempt)."""
        now = self._clock()
        # Fenced by the attempt too: a worker that took its own job back (its lease ran out while
        # a create waited for the request budget) holds it under the same owner name, and the
        # stale attempt must not send a create beside the new one.
        await self._set_held(
            job_id,
            owner,
            _JOBS.c.attempt == attempt,
            prediction_requested_at=now,
            prediction_attempt=attempt,
        )
        return now

    async def set_prediction(self, job_id: str, owner: str, prediction_id: str | None) -> None:
        """Store (or clear) the provider prediction of the job. Raises PredictionOwned if
        another job has it, LeaseLost if the job is no longer ours."""
        values: dict[str, Any] = {"prediction_id": prediction_id}
        if prediction_id is None:
            values |= {"prediction_requested_at": None, "prediction_attempt": None}
        try:
            await self._set_held(job_id, owner, **values)
        except IntegrityError as exc:
            assert prediction_id is not None  # clearing cannot break the unique key
            raise PredictionOwned(prediction_id) from exc

    async def prediction_owners(self, prediction_ids: Sequence[str]) -> dict[str, str]:
        """The job that holds each of these predictions, for those some job holds."""
        if not prediction_ids:
            return {}
        async with self.db.reading() as session:
            rows = await session.execute(
                select(JobRow.prediction_id, JobRow.id).where(
                    JobRow.prediction_id.in_(list(prediction_ids))
                )
            )
            return {prediction: job for prediction, job in rows if prediction}

    async def progress(self, job_id: str, owner: str, value: float) -> job_pb2.JobEvent | None:
        """Raise the job's progress to ``value``; None if it was not higher."""
        async with self.db.writing() as session:
            changed = await self._change(
                session,
                job_id,
                job_pb2.JOB_EVENT_TYPE_PROGRESS,
                where=[*self._held(job_id, owner), _JOBS.c.progress < value],
                values={"progress": value},
            )
        return None if changed is None else changed[1]

    async def succeed(self, job_id: str, owner: str, media: Sequence[NewMedia]) -> job_pb2.JobEvent:
        """Record the media and SUCCEEDED in one transaction. Raises LeaseLost."""
        now = self._clock()
        stored = [
            _StoredMedia(id=str(uuid.uuid4()), job_id=job_id, create_time=now, **asdict(m))
            for m in media
        ]
        async with self.db.writing() as session:
            # The UPDATE is the lease check: it matches only while we hold the job.
            changed = await self._transition(
                session,
                job_id,
                Transition.SUCCEED,
                where=self._held(job_id, owner),
                values=self._finished(now, progress=1.0, error=None),
                media=stored,
            )
            if changed is None:
                raise LeaseLost(job_id)
            row, event = changed
            if stored:
                # One statement for every output (an executemany is one round trip).
                await session.execute(
                    _INSERT_MEDIA, [{**asdict(m), "tenant": row.tenant} for m in stored]
                )
            run_s = (now - (row.start_time or now)).total_seconds()
            await self._record_run_time(session, row.model, run_s, now)
        return event

    async def fail(
        self, job_id: str, owner: str | None, error: status_pb2.Status
    ) -> job_pb2.JobEvent:
        """FAILED with ``error``. With ``owner``, only while holding the lease (else LeaseLost)."""
        now = self._clock()
        where = self._held(job_id, owner) if owner else []
        async with self.db.writing() as session:
            changed = await self._transition(
                session,
                job_id,
                Transition.FAIL,
                where=where,
                values=self._finished(now, error=_bounded_error(error)),
            )
        if changed is None:
            raise LeaseLost(job_id)
        return changed[1]

    async def retry(
        self,
        job_id: str,
        owner: str,
        error: status_pb2.Status,
        delay_s: float,
        *,
        keep_prediction: bool,
    ) -> job_pb2.JobEvent:
        """Back to PENDING until ``delay_s`` from now, recording the transient error."""
        now = self._clock()
        values: dict[str, Any] = {
            "error": _bounded_error(error),
            "next_attempt_at": now + timedelta(seconds=delay_s),
            "lease_owner": None,
            "lease_expires_at": None,
            "enqueued_at": None,
        }
        if not keep_prediction:
            values |= {
                "prediction_id": None,
                "prediction_requested_at": None,
                "prediction_attempt": None,
            }
        async with self.db.writing() as session:
            changed = await self._transition(
                session, job_id, Transition.RETRY, where=self._held(job_id, owner), values=values
            )
        if changed is None:
            raise LeaseLost(job_id)
        return changed[1]

    async def release(self, job_id: str, owner: str) -> job_pb2.JobEvent | None:
        """Hand a RUNNING job back (worker shutting down): PENDING and due at once, keeping its
        prediction so the next worker resumes it. None if the lease was already lost."""
        now = self._clock()
        async with self.db.writing() as session:
            changed = await self._transition(
                session,
                job_id,
                Transition.RELEASE,
                where=self._held(job_id, owner),
                values={
                    "next_attempt_at": now,
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "enqueued_at": None,
                },
            )
        return None if changed is None else changed[1]

    async def finish_cancel(self, job_id: str, owner: str) -> job_pb2.JobEvent:
        """The worker cancelled the prediction: RUNNING -> CANCELED."""
        now = self._clock()
        async with self.db.writing() as session:
            changed = await self._transition(
                session,
                job_id,
                Transition.CANCEL,
                where=self._held(job_id, owner),
                values=self._finished(now),
            )
        if changed is None:
            raise LeaseLost(job_id)
        return changed[1]

    async def lease_holder(self, job_id: str) -> tuple[str, str | None]:
        """The job's state name (``running``, ``succeeded``…) and its lease owner, if any: what
        a worker that lost the job says about it."""
        async with self.db.reading() as session:
            row = (
                await session.execute(
                    select(JobRow.status, JobRow.lease_owner).where(JobRow.id == job_id)
                )
            ).one_or_none()
        if row is None:
            return "gone", None
        return str(row.status).lower(), row.lease_owner

    # ---- reconciler -----------------------------------------------------------------------

    async def take_due(self, *, resend_after_s: float, limit: int = 500) -> list[str]:
        """Ids of jobs that need a wake-up: PENDING and due, or RUNNING with an expired lease,
        and not sent one in the last ``resend_after_s``. One statement picks and marks them, so
        reconcilers in several processes never both send one. On PostgreSQL the pick is
        ``FOR UPDATE SKIP LOCKED``: a row another session holds (a frozen worker mid-write) is
        left for a later pass instead of stalling this one; SQLite has one writer and no row
        locks, and its dialect leaves the clause out. The pick is a CTE so that it runs (and
        locks) once, not once per row the UPDATE looks at."""
        now = self._clock()
        cutoff = now - timedelta(seconds=resend_after_s)
        due = _claimable(now)
        not_recent = or_(JobRow.enqueued_at.is_(None), JobRow.enqueued_at < cutoff)
        picked = (
            select(JobRow.id)
            .where(due, not_recent)
            .order_by(JobRow.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("picked")
        )
        async with self.db.writing() as session:
            result = await session.execute(
                update(JobRow)
                .where(JobRow.id.in_(select(picked.c.id)))
                .values(enqueued_at=now)
                .returning(JobRow.id)
                .execution_options(synchronize_session=False)
            )
            return list(result.scalars().all())

    # ---- helpers --------------------------------------------------------------------------

    @staticmethod
    def _held(job_id: str, owner: str | None) -> list[ColumnElement[bool]]:
        c = _JOBS.c
        return [c.id == job_id, c.status == JobState.RUNNING.value, c.lease_owner == owner]

    @staticmethod
    def _finished(
        now: datetime, *, progress: float | None = None, error: bytes | None = None
    ) -> dict[str, Any]:
        values: dict[str, Any] = {
            "complete_time": now,
            "estimated_completion_time": None,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if progress is not None:
            values["progress"] = progress
        if error is not None or progress is not None:
            values["error"] = error
        return values

    async def _set_held(
        self, job_id: str, owner: str, *where: ColumnElement[bool], **values: Any
    ) -> None:
        """One UPDATE of a job we hold (no event: these fields are not in the snapshot), which
        commits alone. Raises LeaseLost."""
        async with self.db.autocommit() as connection:
            result = await connection.execute(
                update(_JOBS)
                .where(*self._held(job_id, owner), *where)
                .values(**values)
                .returning(_JOBS.c.id)
            )
            if result.scalar_one_or_none() is None:
                raise LeaseLost(job_id)

    async def _transition(
        self,
        session: AsyncSession,
        job_id: str,
        transition: Transition,
        *,
        where: Sequence[ColumnElement[bool]],
        values: dict[str, Any],
        media: Sequence[convert.MediaFields] = (),
    ) -> tuple[Row[Any], job_pb2.JobEvent] | None:
        """Apply a state transition if the job is in one of its source states (and ``where``
        holds): the job's new row and its event, or None if not. The target state comes from
        the pure state table; sources with the same target share one UPDATE."""
        for target, from_states in _targets(transition):
            changed = await self._change(
                session,
                job_id,
                job_pb2.JOB_EVENT_TYPE_STATE_CHANGED,
                where=[_JOBS.c.status.in_(from_states), *where],
                values={**values, "status": target.value},
                media=media,
            )
            if changed is not None:
                return changed
        return None

    async def _change(
        self,
        session: AsyncSession,
        job_id: str,
        event_type: job_pb2.JobEventType.ValueType,
        *,
        where: Sequence[ColumnElement[bool]],
        values: dict[str, Any],
        media: Sequence[convert.MediaFields] = (),
    ) -> tuple[Row[Any], job_pb2.JobEvent] | None:
        """One conditional UPDATE plus its event, or None if the condition did not hold.

        The UPDATE returns the whole row: no read after it. ``media`` are the job's media: a job
        has none until the transaction that succeeds it, which passes the ones it adds."""
        now = self._clock()
        row = (
            await session.execute(
                update(_JOBS)
                .where(_JOBS.c.id == job_id, *where)
                .values(**values, update_time=now, last_sequence=_JOBS.c.last_sequence + 1)
                .returning(*_JOBS.c)
                .execution_options(synchronize_session=False)
            )
        ).one_or_none()
        if row is None:
            return None
        return row, await self._add_event(session, row, media, event_type)

    async def _add_event(
        self,
        session: AsyncSession,
        row: JobRow | Row[Any],
        media: Sequence[convert.MediaFields],
        event_type: job_pb2.JobEventType.ValueType,
    ) -> job_pb2.JobEvent:
        event = job_pb2.JobEvent(
            sequence=row.last_sequence,
            type=event_type,
            job=convert.job_to_proto(row, media),
        )
        event.time.CopyFrom(convert.timestamp(row.update_time))
        await session.execute(_INSERT_EVENT, _event_values(event))
        return event

    async def _cached_mean_run_s(self, model: str) -> float:
        """The model's mean run time, read outside any write when it is not cached."""
        if model in self._mean_run_cache:
            mean = self._mean_run_cache[model]
            return self._estimate_default_s if mean is None else float(mean)
        async with self.db.reading() as session:
            return await self._mean_run_s(session, model)

    async def _mean_run_s(self, session: AsyncSession, model: str) -> float:
        if model in self._mean_run_cache:
            mean = self._mean_run_cache[model]
        else:
            mean = await session.scalar(
                select(ModelStatsRow.mean_run_s).where(ModelStatsRow.model == model)
            )
            self._mean_run_cache[model] = mean
        return self._estimate_default_s if mean is None else float(mean)

    async def _record_run_time(
        self, session: AsyncSession, model: str, run_s: float, now: datetime
    ) -> None:
        """Add a run time to the model's mean. Run times only feed estimates, so they are
        written at most every :data:`RUN_TIMES_FLUSH_S` per model and process, with those
        gathered since (one UPDATE, not one per job); a crash loses only those."""
        pending = self._run_times.setdefault(model, [])
        pending.append(run_s)
        clock = time.monotonic()
        if clock - self._run_times_flushed.get(model, -RUN_TIMES_FLUSH_S) < RUN_TIMES_FLUSH_S:
            return
        self._run_times_flushed[model] = clock
        samples, self._run_times[model] = pending, []
        # The EWMA of the samples in turn, as one linear step: mean * keep + add.
        keep, add = 1.0, 0.0
        for sample in samples:
            keep *= 1 - _EWMA_WEIGHT
            add = add * (1 - _EWMA_WEIGHT) + sample * _EWMA_WEIGHT
        stats = _STATS.c
        result = await session.execute(
            update(_STATS)
            .where(stats.model == model)
            .values(
                mean_run_s=stats.mean_run_s * keep + add,
                samples=stats.samples + len(samples),
                update_time=now,
            )
            .returning(stats.mean_run_s)
        )
        mean = result.scalar_one_or_none()
        if mean is None:  # the model's first runs: the mean starts at the first one
            mean = samples[0]
            for sample in samples[1:]:
                mean = mean * (1 - _EWMA_WEIGHT) + sample * _EWMA_WEIGHT
            try:
                async with session.begin_nested():
                    await session.execute(
                        insert(_STATS).values(
                            model=model, mean_run_s=mean, samples=len(samples), update_time=now
                        )
                    )
            except IntegrityError:
                pass  # another worker recorded this model's first run at the same moment
        # This process's next estimate uses the new mean without reading it back.
        self._mean_run_cache[model] = float(mean)
