"""Serving the emulator with uvicorn inside the caller's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
from types import TracebackType

import uvicorn
from starlette.types import Scope

from mediagen.config import Settings
from mediagen.emulator.app import build_app
from mediagen.emulator.config import EmulatorConfig
from mediagen.emulator.state import Emulator
from mediagen.net import listen_tcp

_START_TIMEOUT_S = 10.0


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


class _Server(uvicorn.Server):
    """uvicorn's server, woken by an event to stop instead of noticing on its next 0.1 s tick."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        self.should_exit = True
        self._stop.set()

    async def main_loop(self) -> None:
        counter = 0  # on_tick refreshes the Date header every 10th tick, as uvicorn's own loop
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.1)


class RunningEmulator:
    """An emulator being served: ``base_url`` for clients, ``emulator`` for faults and counts."""

    def __init__(
        self, emulator: Emulator, base_url: str, server: _Server, task: asyncio.Task[None]
    ) -> None:
        self.emulator = emulator
        self.base_url = base_url
        self._server = server
        self._task = task

    @property
    def host_port(self) -> str:
        """``host:port`` of ``base_url``: the exact output-host entry that lets a worker fetch
        this emulator's files (``MEDIAGEN_OUTPUT_HOSTS``)."""
        return self.base_url.removeprefix("http://")

    async def stop(self) -> None:
        """Stop accepting, give open requests ``shutdown_grace_s``, then close. Idempotent."""
        self._server.request_stop()
        await asyncio.shield(self._task)

    async def wait_stopped(self) -> None:
        """Return when the server has stopped (after :meth:`stop`, or if it failed)."""
        await asyncio.shield(self._task)

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
    sock = listen_tcp(host, port)
    server = _Server(
        uvicorn.Config(
            build_app(emulator, aborter),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            # Longer than any client's idle expiry (httpx: 5 s), so the client always closes an
            # idle connection first; with equal timeouts a reused connection can be closed under
            # a request that is already on its way (a ReadError under load).
            timeout_keep_alive=75,
            timeout_graceful_shutdown=math.ceil(config.shutdown_grace_s),
        )
    )
    aborter.server = server
    # serve() would also take over SIGINT/SIGTERM, which belong to whoever runs this loop.
    task = asyncio.create_task(server._serve(sockets=[sock]), name="mediagen-emulator")
    try:
        await _until_started(server, task)
    except BaseException:
        server.request_stop()
        sock.close()
        raise
    bound_host, bound_port = sock.getsockname()[:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    return RunningEmulator(emulator, f"http://{url_host}:{bound_port}", server, task)


async def _until_started(server: _Server, task: asyncio.Task[None]) -> None:
    # uvicorn offers a flag, not an event: poll it, with a deadline.
    async with asyncio.timeout(_START_TIMEOUT_S):
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("the emulator stopped while starting")
            await asyncio.sleep(0.01)


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
