"""The embedded all-in-one service: API, gateway, worker, reconciler and (without a Replicate
token) the emulator in one process, on SQLite, the in-process queue and local files.

``mediagen serve`` runs it until a signal; tests start the very same object in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import grpc

from mediagen.api.server import start_grpc_server
from mediagen.config import ConfigError, Settings, secret_key_problem
from mediagen.health.checker import HealthChecker
from mediagen.jobs.migrate import upgrade
from mediagen.metrics.http import MetricsEndpoint
from mediagen.metrics.server import ProcessMetrics, serve_metrics
from mediagen.wiring import (
    Core,
    build_interceptors,
    build_servicer,
    open_core,
    open_health,
    open_webhook_receiver,
)
from mediagen.worker.runner import JobRunner
from mediagen.worker.service import WorkerService


class Embedded:
    """Start with :meth:`start`, stop with :meth:`stop`; ports are known once started."""

    def __init__(self, settings: Settings, *, with_gateway: bool = True) -> None:
        self.settings = settings
        self.with_gateway = with_gateway
        self.grpc_port = 0
        self.http_port = 0
        self.emulator: Any = None  # the running emulator, when one was started
        self.core: Core | None = None
        self.health: HealthChecker | None = None  # the dependency checks, once started
        self.runner: JobRunner | None = None
        self.metrics = ProcessMetrics(None, 0)  # the metrics port, once started
        self._stack = contextlib.AsyncExitStack()
        self._gateway_url = ""
        # Where the embedded gateway reaches the API when the TCP port speaks TLS.
        self._private_socket: Path | None = None

    @property
    def grpc_target(self) -> str:
        return f"{self.settings.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """The gateway's base URL (https when TLS is on); empty without a gateway."""
        return self._gateway_url

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        stack = self._stack
        settings = self.settings
        if self.with_gateway and settings.http_port == 0:
            # Media URLs name the HTTP port, so pick a free one before anything is built.
            settings = settings.replace(http_port=_free_port(settings.host))
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings = _with_secret_key(settings)
        await upgrade(settings.effective_database_url)
        if not settings.replicate_api_token:
            settings = await self._start_emulator(settings)
        self.settings = settings
        core = self.core = await stack.enter_async_context(open_core(settings, worker=True))
        checker = self.health = await stack.enter_async_context(open_health(core))
        self.metrics = await stack.enter_async_context(serve_metrics(settings, "serve", db=core.db))

        # Built (its runner registered) before the API can enqueue anything.
        worker = WorkerService(core)
        self.runner = worker.runner
        stack.push_async_callback(worker.stop)

        servicer = build_servicer(core)
        if settings.tls is not None and self.with_gateway:
            self._private_socket = self._private_socket_path()
        server = await start_grpc_server(
            settings.host,
            settings.grpc_port,
            servicer=servicer,
            interceptors=await build_interceptors(core),
            tls=settings.tls,
            unix_socket=self._private_socket,
            max_message_bytes=settings.grpc_max_message_bytes,
            checker=checker,
        )
        self.grpc_port = server.port

        async def stop_api_and_worker() -> None:
            # One grace period: the API and the worker drain side by side.
            await asyncio.gather(server.stop(settings.shutdown_grace_s, servicer), worker.stop())

        stack.push_async_callback(stop_api_and_worker)

        if self.with_gateway:
            await self._start_gateway(settings, core)

        # The in-process queue starts empty: the worker's first sweep wakes every job a
        # previous run left behind.
        await worker.start()

    async def _start_emulator(self, settings: Settings) -> Settings:
        from mediagen.emulator import EmulatorConfig, start_emulator

        token = f"r8_emulated_{secrets.token_hex(8)}"
        config = EmulatorConfig.from_settings(settings.replace(replicate_api_token=token))
        self.emulator = await start_emulator(config, host="127.0.0.1", port=settings.emulator_port)
        self._stack.push_async_callback(self.emulator.stop)
        # The emulator serves outputs from its own loopback address: allowed by this one exact
        # host:port entry, the only kind that may be private (mediagen/fetching/policy.py).
        return settings.replace(
            replicate_api_token=token,
            replicate_base_url=self.emulator.base_url,
            output_hosts=(*settings.output_hosts, self.emulator.host_port),
        )

    def _private_socket_path(self) -> Path:
        """A Unix socket in a fresh directory only this user can enter (mode 0700).

        The gateway would otherwise need a client certificate of its own to pass mTLS, and a
        name the server certificate is valid for; whoever can open this socket could read the
        TLS key anyway.
        """
        directory = Path(tempfile.mkdtemp(prefix="mediagen-"))
        self._stack.callback(shutil.rmtree, directory, ignore_errors=True)
        return directory / "grpc.sock"

    async def _start_gateway(self, settings: Settings, core: Core) -> None:
        from mediagen.gateway import build_gateway_app, start_gateway
        from mediagen.gateway.server import upstream_options

        target = (
            f"unix:{self._private_socket}"
            if self._private_socket is not None
            else f"127.0.0.1:{self.grpc_port}"
        )
        channel = grpc.aio.insecure_channel(target, options=upstream_options(settings))
        self._stack.push_async_callback(channel.close)
        files_root = settings.media_dir if settings.storage_type == "local" else None
        app = build_gateway_app(
            channel,
            files_root=files_root,
            files_secret_key=settings.secret_key,
            http=settings.http,
            metrics=MetricsEndpoint(self.metrics.refresh) if settings.metrics else None,
            webhooks=await self._stack.enter_async_context(
                open_webhook_receiver(settings, core.notices)
            ),
        )
        gateway = await start_gateway(
            app,
            settings.host,
            settings.http_port,
            grace_s=settings.shutdown_grace_s,
            tls=settings.tls,
        )
        self.http_port = gateway.port
        self._gateway_url = gateway.url
        self._stack.push_async_callback(gateway.stop)

    async def stop(self) -> None:
        """Stop taking calls, let running work finish (up to the grace period), close all."""
        await self._stack.aclose()


def _with_secret_key(settings: Settings) -> Settings:
    """Settings with a private SECRET_KEY: the one set, else the one this data dir keeps
    (generated on first start, mode 0600), so page tokens survive restarts."""
    if settings.secret_key:
        problem = secret_key_problem(settings)
        if problem is not None:
            raise ConfigError(f"{problem}; unset it (serve keeps its own) or set a random one")
        return settings
    path = settings.secret_key_path
    if not path.exists():
        # Written aside, then linked into place: link() fails if the key exists, so two
        # processes starting on one data dir agree on one key, and none reads a partial file.
        draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if not key:
        raise ConfigError(f"{path} is empty; delete it to have a new key made")
    return settings.replace(secret_key=key)


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
