"""SQLAlchemy 2 models: jobs, their media, their events, and per-model run-time statistics.

The same schema runs on SQLite (embedded) and PostgreSQL; Alembic migrations in ``migrations/``
create it. Times are stored in UTC and always come back timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC; SQLite drops the zone, so it is put back on load."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: Longest tenant name the schema holds.
TENANT_LENGTH = 100

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: The caller's tenant: every API read and write is scoped to it.
    tenant: Mapped[str] = mapped_column(String(TENANT_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    prompt: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(200))
    #: GenerationParameters as proto-JSON, exactly as submitted.
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: What the worker sends to the provider (validated, defaults filled in).
    model_input: Mapped[dict[str, Any]] = mapped_column(JSON)
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    #: AIP-155 idempotency key; unique per tenant, so a retried GenerateMedia finds the first
    #: job, and two tenants choosing the same key still get a job each.
    request_id: Mapped[str | None] = mapped_column(String(64))
    #: The request id (``x-request-id``, mediagen.logs.request_ids) of the call that submitted
    #: it: every attempt logs under it, so one id finds the job's whole story.
    submit_request_id: Mapped[str | None] = mapped_column(String(128))

    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    #: Serialized google.rpc.Status: why it failed, or the last transient error.
    error: Mapped[bytes | None] = mapped_column(LargeBinary)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    #: The provider's prediction, stored before waiting on it so no attempt pays twice. Unique:
    #: one prediction belongs to at most one job (docs/predictions.md).
    prediction_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    #: Set just before a create call: if no id got stored, the create may still have happened.
    prediction_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The attempt that sent that create: with the job id, the marker it carried.
    prediction_attempt: Mapped[int | None] = mapped_column(Integer)

    #: The worker running the job; on a finished job, the retention pass deleting it
    #: (mediagen/jobs/expired.py): there is one lease at a time either way.
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When a PENDING job may next be claimed (retries wait here).
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Last time a wake-up was sent for it; the reconciler re-sends only after a while.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Sequence number of the job's latest event.
    last_sequence: Mapped[int] = mapped_column(BigInteger, default=0)

    create_time: Mapped[datetime] = mapped_column(UTCDateTime)
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime)
    complete_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    estimated_completion_time: Mapped[datetime | None] = mapped_column(UTCDateTime)

    media: Mapped[list[MediaRow]] = relationship(
        back_populates="job", order_by="MediaRow.position", lazy="raise"
    )

    __table_args__ = (
        UniqueConstraint("tenant", "request_id", name="uq_jobs_tenant_request_id"),
        # One tenant's listing, newest first (scanned backwards).
        Index("ix_jobs_tenant_create_time_id", "tenant", "create_time", "id"),
        # The same for one model (ListJobs ``model``): one version (``model = m:v``) or every one
        # (``model = m OR model LIKE 'm:%'``) reads only that model's entries; the pattern
        # opclass makes the LIKE a range in any collation (migration 0007).
        Index(
            "ix_jobs_tenant_model_create_time_id",
            "tenant",
            "model",
            "create_time",
            "id",
            postgresql_ops={"model": "varchar_pattern_ops"},
        ),
        # A tenant's active jobs, counted on every submission when MEDIAGEN_MAX_ACTIVE_JOBS is set.
        Index("ix_jobs_tenant_status", "tenant", "status"),
        Index("ix_jobs_create_time_id", "create_time", "id"),
        Index("ix_jobs_status_create_time", "status", "create_time"),
        Index("ix_jobs_status_next_attempt_at", "status", "next_attempt_at"),
    )


class MediaRow(Base):
    __tablename__ = "media"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    #: The job's tenant, copied so a media lookup is scoped without a join.
    tenant: Mapped[str] = mapped_column(String(TENANT_LENGTH))
    #: Index in the model's output list.
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    mime_type: Mapped[str] = mapped_column(String(100))
    storage_key: Mapped[str] = mapped_column(String(500))
    width: Mapped[int] = mapped_column(Integer, default=0)
    height: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[datetime] = mapped_column(UTCDateTime)

    job: Mapped[JobRow] = relationship(back_populates="media", lazy="raise")

    __table_args__ = (UniqueConstraint("job_id", "position", name="uq_media_job_id_position"),)


class JobEventRow(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    #: Per-job, gap-free; the unique key stops two writers from both appending N.
    sequence: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(32))
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The serialized mediagen.v1.Job right after the event (media URLs left empty: they may
    #: expire, so they are filled in when the event is sent).
    snapshot: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (UniqueConstraint("job_id", "sequence", name="uq_job_events_job_id_sequence"),)


class ModelStatsRow(Base):
    """Recent run times of a model, for completion estimates."""

    __tablename__ = "model_stats"

    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: Exponentially weighted mean of the run time (claim to success), in seconds.
    mean_run_s: Mapped[float] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(Integer)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime)
