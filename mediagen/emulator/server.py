"""Serving the emulator inside the caller's event loop (:mod:`mediagen.http_server`, as the
gateway is)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from types import TracebackType

import uvicorn
from starlette.types import Scope

from mediagen.config import Settings
from mediagen.emulator.app import build_app
from mediagen.emulator.config import EmulatorConfig
from mediagen.emulator.state import Emulator
from mediagen.http_server import RunningHttpServer, start_http_server


class _Aborter:
    """Closes a client's TCP connection with no HTTP response, for ``Drop`` faults.

    ASGI has no way to do this (an app that raises gets a 500), so it finds the connection
    among uvicorn's open ones by the client address in the scope and aborts its transport.
    Only the transport is used, which every uvicorn protocol class has.
    """

    def __init__(self) -> None:
        self.server: uvicorn.Server | None = None

    def __call__(self, scope: Scope) -> bool:
        client = scope.get("client")
        if self.server is None or client is None:
            return False
        for connection in list(self.server.server_state.connections):
            transport = connection.transport
            peer = transport.get_extra_info("peername") if transport is not None else None
            if peer is not None and tuple(peer[:2]) == tuple(client):
                transport.abort()
                return True
        return False


class RunningEmulator:
    """An emulator being served: ``base_url`` for clients, ``emulator`` for faults and counts."""

    def __init__(self, emulator: Emulator, base_url: str, http: RunningHttpServer) -> None:
        self.emulator = emulator
        self.base_url = base_url
        self._http = http

    @property
    def host_port(self) -> str:
        """``host:port`` of ``base_url``: the exact output-host entry that lets a worker fetch
        this emulator's files (``MEDIAGEN_OUTPUT_HOSTS``)."""
        return self.base_url.removeprefix("http://")

    async def stop(self) -> None:
        """Stop accepting, give open requests ``shutdown_grace_s``, then close (webhooks not
        sent yet are forgotten). Idempotent."""
        await self._http.stop()
        await self.emulator.webhooks.close()

    async def wait_stopped(self) -> None:
        """Return when the server has stopped (after :meth:`stop`, or if it failed)."""
        await self._http.wait_stopped()

    async def __aenter__(self) -> RunningEmulator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def start_emulator(
    config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> RunningEmulator:
    """Serve a new emulator on ``host:port`` (0: any free port) in the running event loop."""
    emulator = Emulator(config)
    aborter = _Aborter()
    http = await start_http_server(
        build_app(emulator, aborter),
        host,
        port,
        name="emulator",
        grace_s=config.shutdown_grace_s,
        # Longer than any client's idle expiry (httpx: 5 s), so the client always closes an
        # idle connection first; with equal timeouts a reused connection can be closed under
        # a request that is already on its way (a ReadError under load).
        timeout_keep_alive=75,
    )
    aborter.server = http.server
    return RunningEmulator(emulator, f"http://{http.host_port}", http)


async def serve_emulator_forever(settings: Settings) -> None:
    """``mediagen emulator``: serve on ``settings.host:settings.emulator_port`` until cancelled
    (Ctrl-C under ``asyncio.run``) or SIGTERM."""
    running = await start_emulator(
        EmulatorConfig.from_settings(settings), settings.host, settings.emulator_port
    )
    print(f"emulator listening on {running.base_url}", flush=True)
    loop = asyncio.get_running_loop()
    terminate = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread, Windows
        loop.add_signal_handler(signal.SIGTERM, terminate.set)
    waiters = [
        asyncio.ensure_future(running.wait_stopped()),
        asyncio.ensure_future(terminate.wait()),
    ]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
        await running.stop()
