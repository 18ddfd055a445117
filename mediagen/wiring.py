"""The one place that builds the application from configuration.

Which store (SQLite or PostgreSQL, by DATABASE_URL), which queue and event bus (in-process, or
Redis when REDIS_URL is set), which storage (STORAGE_TYPE) and which provider (Replicate, or the
emulator's URL). Nothing else branches on the mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from taskiq import AsyncBroker

from mediagen.api.servicer import MediaGenerationServicer
from mediagen.config import Settings
from mediagen.events.bus import EventBus, InProcessBus
from mediagen.events.redis import RedisBus
from mediagen.jobs.database import Database, Timeouts
from mediagen.jobs.store import JobStore
from mediagen.providers.replicate import ReplicateProvider
from mediagen.storage import build_storage
from mediagen.storage.base import Storage
from mediagen.worker import broker as queue
from mediagen.worker.reconciler import Reconciler
from mediagen.worker.runner import JobRunner


@dataclass
class Core:
    """What every role shares: store, events, storage and the queue."""

    settings: Settings
    db: Database
    store: JobStore
    bus: EventBus
    storage: Storage
    broker: AsyncBroker

    async def enqueue(self, job_id: str) -> None:
        await queue.enqueue(self.broker, job_id)


def build_bus(settings: Settings) -> EventBus:
    if settings.redis_url:
        return RedisBus(settings.redis_url, channel_prefix=settings.events_channel_prefix)
    return InProcessBus()


def build_provider(settings: Settings) -> ReplicateProvider:
    return ReplicateProvider(
        api_token=settings.replicate_api_token,
        base_url=settings.replicate_base_url,
    )


@contextlib.asynccontextmanager
async def open_core(settings: Settings, *, worker: bool) -> AsyncIterator[Core]:
    """Open every shared part for a process; ``worker`` says whether it consumes the queue."""
    db = Database(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        timeouts=Timeouts(
            statement_s=settings.db_statement_timeout_s,
            lock_s=settings.db_lock_timeout_s,
            idle_in_transaction_s=settings.db_idle_in_transaction_timeout_s,
        ),
    )
    bus = build_bus(settings)
    storage = build_storage(settings)
    broker = queue.build_broker(settings)
    broker.is_worker_process = worker
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(db.dispose)
        await bus.start()
        stack.push_async_callback(bus.close)
        await storage.start()
        stack.push_async_callback(storage.close)
        # Creates the Redis consumer group before the first message, so none is skipped.
        await broker.startup()
        stack.push_async_callback(broker.shutdown)
        yield Core(
            settings=settings,
            db=db,
            store=JobStore(db, estimate_default_s=settings.estimate_default_s),
            bus=bus,
            storage=storage,
            broker=broker,
        )


def build_servicer(core: Core) -> MediaGenerationServicer:
    return MediaGenerationServicer(core.settings, core.store, core.bus, core.storage, core.enqueue)


def build_runner(core: Core) -> tuple[JobRunner, ReplicateProvider]:
    """A job runner for this process, registered as the queue task's handler, and its
    provider (the caller closes it)."""
    provider = build_provider(core.settings)
    runner = JobRunner(
        core.settings, core.store, core.bus, provider, core.storage, requeue=core.enqueue
    )
    core.broker.state.handle_job = runner.handle
    return runner, provider


def build_reconciler(core: Core) -> Reconciler:
    settings = core.settings
    return Reconciler(
        core.store,
        core.enqueue,
        interval_s=settings.reconcile_interval_s,
        # A wake-up is re-sent if its job is still unclaimed a lease later.
        resend_after_s=max(settings.lease_s, 3 * settings.reconcile_interval_s),
    )
