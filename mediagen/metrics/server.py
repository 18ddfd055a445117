"""A process's own metrics port: ``GET /metrics`` on uvicorn in the running event loop.

Plaintext, like a worker's health port: Prometheus scrapes it from inside the deployment's
network, and it shows counts and timings only (no ids, tenants or prompts). It serves nothing
but ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import uvicorn

from mediagen.config import Settings
from mediagen.jobs.database import Database
from mediagen.metrics import definitions as m
from mediagen.metrics.gauges import DatabaseGauges
from mediagen.metrics.http import MetricsEndpoint, Refresh
from mediagen.net import listen_tcp


class _QuietServer(uvicorn.Server):
    """Leaves signal handling to the process (the role owns SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class MetricsServer:
    port: int
    _server: uvicorn.Server
    _task: asyncio.Task[None]

    async def stop(self) -> None:
        self._server.should_exit = True
        await asyncio.shield(self._task)


@dataclass(frozen=True)
class ProcessMetrics:
    """What :func:`serve_metrics` set up: the database gauges' refresh (None without one) and
    the metrics port (0: none)."""

    refresh: Refresh | None
    port: int


def mark_process(role: str) -> None:
    """Say which role this process runs (``mediagen_process_info``)."""
    try:
        installed = version("mediagen")
    except PackageNotFoundError:  # run from a source tree that was never installed
        installed = "unknown"
    m.INFO.labels(role=role, version=installed).set(1)


async def start_metrics_server(
    host: str, port: int, *, refresh: Refresh | None = None
) -> MetricsServer:
    """Serve this process's metrics on ``host:port`` (0: any free port) until stopped;
    ``refresh`` runs before each scrape (the database gauges)."""
    sock = listen_tcp(host, port, backlog=64)
    config = uvicorn.Config(
        MetricsEndpoint(refresh),
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",
        server_header=False,
        timeout_graceful_shutdown=1,
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="metrics")
    while not server.started:
        if task.done():
            sock.close()
            await task  # raises the start-up error
            raise RuntimeError("the metrics server stopped while starting")
        await asyncio.sleep(0.01)
    return MetricsServer(int(sock.getsockname()[1]), server, task)


@contextlib.asynccontextmanager
async def serve_metrics(
    settings: Settings, role: str, *, db: Database | None = None
) -> AsyncIterator[ProcessMetrics]:
    """For the duration of the block: mark the process's role, and serve ``/metrics`` on
    ``MEDIAGEN_METRICS_PORT`` when it is set. With ``db`` the database gauges are computed on
    scrape (the embedded gateway's ``/metrics`` shares the yielded ``refresh``)."""
    mark_process(role)
    refresh = (
        DatabaseGauges(db, min_interval_s=settings.metrics_query_interval_s).refresh
        if db is not None and settings.metrics
        else None
    )
    server = None
    if settings.metrics and settings.metrics_port:
        server = await start_metrics_server(settings.host, settings.metrics_port, refresh=refresh)
        print(f"metrics on http://{settings.host}:{server.port}/metrics", flush=True)
    try:
        yield ProcessMetrics(refresh, server.port if server is not None else 0)
    finally:
        if server is not None:
            await server.stop()
