"""The processes mediagen runs as, one coroutine each; the CLI calls these.

``serve`` is the embedded all-in-one (api + gateway + worker + reconciler, and the Replicate
emulator when no token is set). ``api``, ``worker``, ``gateway`` and ``scheduler`` are the parts
of the distributed set-up; ``migrate`` brings the database schema up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from mediagen.api.server import start_grpc_server
from mediagen.config import DAY_S, ConfigError, Settings, secret_key_problem
from mediagen.embedded import Embedded
from mediagen.jobs.migrate import upgrade
from mediagen.logs import setup as logs
from mediagen.metrics.server import serve_metrics
from mediagen.tls import ClientTLS
from mediagen.wiring import (
    build_interceptors,
    build_reconciler,
    build_retention,
    build_servicer,
    open_core,
    open_health,
    open_webhook_receiver,
)
from mediagen.worker.service import WorkerService

log = logging.getLogger(__name__)


def _announce(message: str) -> None:
    print(message, flush=True)


async def _until_signalled() -> None:
    """Return on the first SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def _background(*coroutines: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``coroutines`` as tasks for the duration of the block, then cancel them."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def serve(settings: Settings) -> None:
    """Run everything in one process until SIGTERM/SIGINT; print where it listens."""
    _require_secret_key(settings, "serve")
    app = Embedded(settings)
    await app.start()
    try:
        if app.emulator is not None:
            _announce(f"Replicate emulator on {app.emulator.base_url} (no REPLICATE_API_TOKEN set)")
        _announce(f"gRPC listening on {app.grpc_target}{_tls_note(settings)}")
        _announce(f"HTTP listening on {app.http_url} (API docs at /docs)")
        _announce(f"data in {settings.data_dir.resolve()}")
        await _until_signalled()
        _announce("shutting down")
    finally:
        await app.stop()


def _tls_note(settings: Settings) -> str:
    if settings.tls is None:
        return ""
    return " (TLS, client certificates required)" if settings.tls.mutual else " (TLS)"


def _require_redis(settings: Settings, role: str) -> None:
    """The separate roles share work through Redis; without it jobs would never reach a worker."""
    if not settings.redis_url:
        raise ConfigError(
            f"`mediagen {role}` is part of the distributed set-up and needs REDIS_URL "
            "(and usually DATABASE_URL); for one process on this machine run `mediagen serve`"
        )
    _require_secret_key(settings, role)


def _require_secret_key(settings: Settings, role: str, *, always: bool = False) -> None:
    """A deployment (anything with REDIS_URL, or ``always``) signs with its own key, the same
    in every process; a missing or public key would let anyone forge page tokens and media
    URLs."""
    problem = secret_key_problem(settings) if settings.distributed or always else None
    if problem is not None:
        raise ConfigError(
            f"`mediagen {role}` refuses to start: {problem}; set SECRET_KEY to the same "
            "random value in every process (e.g. `openssl rand -hex 32`)"
        )


async def api(settings: Settings) -> None:
    """Run the gRPC API (with health and reflection) until SIGTERM/SIGINT."""
    _require_redis(settings, "api")
    async with (
        open_core(settings, worker=False) as core,
        open_health(core) as checker,
        serve_metrics(settings, "api", db=core.db),
    ):
        servicer = build_servicer(core)
        server = await start_grpc_server(
            settings.host,
            settings.grpc_port,
            servicer=servicer,
            interceptors=await build_interceptors(core),
            tls=settings.tls,
            max_message_bytes=settings.grpc_max_message_bytes,
            checker=checker,
        )
        _announce(f"gRPC listening on {settings.host}:{server.port}{_tls_note(settings)}")
        await _until_signalled()
        await server.stop(settings.shutdown_grace_s, servicer)


async def worker(settings: Settings) -> None:
    """Run a worker (and its reconciler) until SIGTERM/SIGINT, then drain."""
    _require_redis(settings, "worker")
    async with (
        open_core(settings, worker=True) as core,
        open_health(core) as checker,
        serve_metrics(settings, "worker"),
    ):
        service = WorkerService(
            core, health_port=settings.worker_health_port or None, checker=checker
        )
        try:
            await service.start()
            _announce(
                f"worker {service.owner} consuming {settings.queue_name}"
                + (f"; health on {settings.host}:{service.health_port}" if service.health else "")
            )
            await _until_signalled()
        finally:
            await service.stop()


async def gateway(
    settings: Settings, grpc_target: str, upstream_tls: ClientTLS | None = None
) -> None:
    """Run the JSON/HTTP gateway in front of the gRPC API at ``grpc_target`` (reached over TLS
    with ``upstream_tls``)."""
    from mediagen.gateway import run_gateway

    # It checks the signatures of local media URLs, which the API made with the shared key.
    _require_secret_key(settings, "gateway", always=settings.storage_type == "local")
    async with open_webhook_receiver(settings) as webhooks:
        await run_gateway(settings, grpc_target, upstream_tls=upstream_tls, webhooks=webhooks)


async def scheduler(settings: Settings) -> None:
    """Run the reconciler (periodic re-enqueue of due and orphaned jobs) and retention alone."""
    _require_redis(settings, "scheduler")
    async with (
        open_core(settings, worker=False) as core,
        serve_metrics(settings, "scheduler", db=core.db),
    ):
        _announce(f"reconciler every {settings.reconcile_interval_s:g}s")
        loops = [build_reconciler(core).run_forever()]
        retention = build_retention(core)
        if retention is not None:
            _announce(
                f"retention every {settings.retention_interval_s:g}s: jobs finished "
                f"{settings.retention_s / DAY_S:g} day(s) ago are deleted"
            )
            loops.append(retention.run_forever())
        async with _background(*loops):
            await _until_signalled()


async def migrate(settings: Settings) -> None:
    """Apply the Alembic migrations to the configured database."""
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    await upgrade(settings.effective_database_url)
    _announce("database schema is up to date")


async def emulator(settings: Settings) -> None:
    """Run the Replicate emulator alone."""
    from mediagen.emulator import serve_emulator_forever

    await serve_emulator_forever(settings)


def configure_logging(settings: Settings) -> None:
    """Every role logs the same way (:mod:`mediagen.logs.setup`)."""
    logs.configure_logging(settings.log_level, settings.log_format)
