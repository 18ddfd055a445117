"""The one place that builds the application from configuration.

Which store (SQLite or PostgreSQL, by DATABASE_URL), which queue and event bus (in-process, or
Redis when REDIS_URL is set), which storage (STORAGE_TYPE), which provider (Replicate, or the
emulator's URL) and where the per-tenant rate limit and the provider request budget live (this
process, or Redis). Nothing else branches on the mode.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from taskiq import AsyncBroker

from mediagen.api.servicer import MediaGenerationServicer
from mediagen.auth.interceptor import AuthInterceptor
from mediagen.auth.mtls import CertificatePolicy
from mediagen.auth.startup import AuthMode, auth_mode, warning_lines
from mediagen.auth.store import KeyStore
from mediagen.auth.verifier import KeyVerifier
from mediagen.config import ConfigError, Settings, secret_key_problem
from mediagen.events.bus import EventBus, InProcessBus
from mediagen.events.redis import RedisBus
from mediagen.events.settled import SettledNotices
from mediagen.gateway.webhooks import WebhookReceiver
from mediagen.health.checker import HealthChecker, Probe
from mediagen.health.probes import RedisPing
from mediagen.jobs.database import Database, Timeouts
from mediagen.jobs.expired import ExpiredJobs
from mediagen.jobs.store import JobStore
from mediagen.limits.bucket import Bucket
from mediagen.limits.quota import Quotas
from mediagen.limits.rate import LocalRateLimiter, RateLimiter
from mediagen.limits.redis_rate import RedisRateLimiter
from mediagen.metrics.grpc import MetricsInterceptor
from mediagen.metrics.instrumented import MeasuredProvider, MeasuredStorage
from mediagen.providers.base import Provider
from mediagen.providers.budget import RequestBudget
from mediagen.providers.budgeted import BudgetedProvider
from mediagen.providers.rates import provider_rates
from mediagen.providers.replicate import ReplicateProvider
from mediagen.storage import build_storage
from mediagen.storage.base import Storage
from mediagen.webhooks.secret import SigningSecret
from mediagen.webhooks.seen import LocalSeen, RedisSeen, Seen
from mediagen.worker import broker as queue
from mediagen.worker.reconciler import Reconciler
from mediagen.worker.retention import Retention
from mediagen.worker.runner import JobRunner

log = logging.getLogger(__name__)


@dataclass
class Core:
    """What every role shares: store, events, storage and the queue."""

    settings: Settings
    db: Database
    store: JobStore
    bus: EventBus
    storage: Storage
    broker: AsyncBroker
    quotas: Quotas
    notices: SettledNotices  # completion webhooks' word, gateway to worker

    async def enqueue(self, job_id: str) -> None:
        await queue.enqueue(self.broker, job_id)


def build_bus(settings: Settings) -> EventBus:
    if settings.redis_url:
        return RedisBus(settings.redis_url, channel_prefix=settings.events_channel_prefix)
    return InProcessBus()


def build_settled_bus(settings: Settings) -> EventBus:
    """The bus of settled notices (:mod:`mediagen.events.settled`): channels of its own."""
    if settings.redis_url:
        prefix = f"{settings.events_channel_prefix}settled:"
        return RedisBus(settings.redis_url, channel_prefix=prefix)
    return InProcessBus()


@contextlib.asynccontextmanager
async def open_webhook_receiver(
    settings: Settings, notices: SettledNotices | None = None
) -> AsyncIterator[WebhookReceiver]:
    """The gateway's webhook route, publishing to ``notices`` (None: a settled bus of its own,
    as the ``mediagen gateway`` process has no core)."""
    # Anything older than the tolerance is refused by its timestamp, so repeats need no longer.
    window_s = settings.webhook_tolerance_s + 60.0
    seen: Seen = (
        RedisSeen(settings.redis_url, window_s, prefix=f"{settings.events_channel_prefix}hook:")
        if settings.redis_url
        else LocalSeen(window_s)
    )
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(seen.close)
        if notices is None:
            bus = build_settled_bus(settings)
            await bus.start()
            stack.push_async_callback(bus.close)
            notices = SettledNotices(bus)
        if settings.replicate_webhook_secret:
            secret = SigningSecret(configured=settings.replicate_webhook_secret)
        else:
            provider = build_provider(settings)
            stack.push_async_callback(provider.close)
            secret = SigningSecret(fetch=provider.webhook_secret)
        yield WebhookReceiver(
            secret,
            seen,
            notices,
            tolerance_s=settings.webhook_tolerance_s,
            max_body_bytes=settings.webhook_max_body_bytes,
        )


def build_rate_limiter(settings: Settings) -> RateLimiter | None:
    """None when the rate limit is off; shared through Redis when REDIS_URL is set, so the
    limit holds across API processes."""
    if settings.rate_limit_per_s <= 0:
        return None
    bucket = Bucket(settings.rate_limit_per_s, settings.rate_limit_burst)
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url, bucket, prefix=settings.rate_limit_prefix)
    return LocalRateLimiter(bucket)


def build_quotas(settings: Settings) -> Quotas:
    return Quotas(
        rate=build_rate_limiter(settings),
        max_active_jobs=settings.max_active_jobs,
        max_watch_streams=settings.max_watch_streams,
    )


def build_provider(settings: Settings) -> ReplicateProvider:
    return ReplicateProvider.from_settings(settings)


def build_budget(settings: Settings) -> RequestBudget:
    """The provider request budget: in this process, or shared through Redis when REDIS_URL is
    set, so it holds across every worker."""
    return RequestBudget.build(
        provider_rates(settings),
        redis_url=settings.redis_url,
        prefix=settings.provider_budget_prefix,
        max_wait_s=settings.provider_budget_max_wait_s,
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
    settled = build_settled_bus(settings)
    storage = build_storage(settings)
    broker = queue.build_broker(settings)
    broker.is_worker_process = worker
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(db.dispose)
        await bus.start()
        stack.push_async_callback(bus.close)
        await settled.start()
        stack.push_async_callback(settled.close)
        await storage.start()
        stack.push_async_callback(storage.close)
        # Creates the Redis consumer group before the first message, so none is skipped.
        await broker.startup()
        stack.push_async_callback(broker.shutdown)
        quotas = build_quotas(settings)
        stack.push_async_callback(quotas.close)
        yield Core(
            settings=settings,
            db=db,
            store=JobStore(db, estimate_default_s=settings.estimate_default_s),
            bus=bus,
            storage=storage,
            broker=broker,
            quotas=quotas,
            notices=SettledNotices(settled),
        )


@contextlib.asynccontextmanager
async def open_health(core: Core) -> AsyncIterator[HealthChecker]:
    """Probe what this process depends on (the database, storage, and Redis when it is used)
    every MEDIAGEN_HEALTH_INTERVAL_S for the duration of the block; the first round is done
    when the block starts."""
    settings = core.settings
    probes: dict[str, Probe] = {"database": core.db.ping, "storage": core.storage.probe}
    async with contextlib.AsyncExitStack() as stack:
        if settings.redis_url:
            redis = RedisPing(settings.redis_url, timeout_s=settings.health_timeout_s)
            stack.push_async_callback(redis.close)
            probes["redis"] = redis
        checker = HealthChecker(
            probes, interval_s=settings.health_interval_s, timeout_s=settings.health_timeout_s
        )
        yield await stack.enter_async_context(checker.running())


def build_servicer(core: Core) -> MediaGenerationServicer:
    problem = secret_key_problem(core.settings)
    if problem is not None:  # the roles check first, with advice; this is the backstop
        raise ConfigError(f"cannot sign page tokens: {problem}")
    return MediaGenerationServicer(
        core.settings, core.store, core.bus, core.storage, core.enqueue, quotas=core.quotas
    )


async def build_auth(core: Core) -> list[grpc.aio.ServerInterceptor]:
    """The API server's authentication, by the start-up rule of :mod:`mediagen.auth.startup`:
    the interceptor, or nothing (open or off, said loudly in the log, on stderr). Raises
    ConfigError when the server must not start."""
    settings = core.settings
    keys = KeyStore(core.db)
    active = await keys.count_active() if settings.auth else 0
    mode = auth_mode(enabled=settings.auth, host=settings.host, active_keys=active)
    if mode is not AuthMode.ENFORCED:
        # One record, banner included: on stderr as loud as before, and one JSON line in JSON.
        log.warning(
            "authentication %s: every call acts as the anonymous admin\n%s",
            mode.value,
            "\n".join(warning_lines(mode, settings.host)),
        )
        return []
    log.info("authentication on: %d active API key(s)", active)
    verifier = KeyVerifier(keys, cache_s=settings.auth_cache_s)
    return [
        AuthInterceptor(
            verifier,
            certificates=CertificatePolicy.of(
                settings.auth_mtls_admins, settings.auth_mtls_tenants
            ),
            protect_reflection=settings.auth_reflection,
        )
    ]


async def build_interceptors(core: Core) -> list[grpc.aio.ServerInterceptor]:
    """The API server's interceptors, in order: metrics (unless MEDIAGEN_METRICS is off), then
    authentication (:func:`build_auth`); the server adds request decoding last. Metrics go
    first so that a call authentication refuses is counted with its code too."""
    metrics = [MetricsInterceptor()] if core.settings.metrics else []
    return [*metrics, *await build_auth(core)]


def build_runner(core: Core) -> tuple[JobRunner, Provider]:
    """A job runner for this process, registered as the queue task's handler, and its
    provider (the caller closes it). Its provider and storage calls are measured, and the
    provider's spend the shared request budget."""
    provider = BudgetedProvider(
        MeasuredProvider(build_provider(core.settings)), build_budget(core.settings)
    )
    runner = JobRunner(
        core.settings,
        core.store,
        core.bus,
        provider,
        MeasuredStorage(core.storage),
        requeue=core.enqueue,
        notices=core.notices,
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


def build_retention(core: Core) -> Retention | None:
    """The retention pass of this process; None when MEDIAGEN_RETENTION_DAYS is 0 (keep all)."""
    settings = core.settings
    if settings.retention_s <= 0:
        return None
    return Retention(
        ExpiredJobs(core.db),
        MeasuredStorage(core.storage),
        age_s=settings.retention_s,
        interval_s=settings.retention_interval_s,
        batch_size=settings.retention_batch_size,
    )
