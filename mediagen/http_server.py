"""Serving an ASGI app with uvicorn inside the caller's event loop: the one way both embedded
HTTP servers (the gateway and the Replicate emulator) are run.

The port is bound first (:func:`mediagen.net.listen_tcp`), so a taken one fails at the call with
:class:`~mediagen.net.CannotListen`; signals stay with whoever runs the loop; :meth:`stop` wakes
the server at once (uvicorn's own loop would notice on its next 0.1 s tick), lets open requests
finish for up to the grace period, and is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from mediagen.net import listen_tcp

START_TIMEOUT_S = 10.0


class _InLoopServer(uvicorn.Server):
    """uvicorn's server, leaving signal handlers alone and stopped by an event."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stop = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_stop(self) -> None:
        self.should_exit = True
        self._stop.set()

    async def main_loop(self) -> None:
        counter = 0  # on_tick refreshes the Date header every 10th tick, as uvicorn's own loop
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.1)


class RunningHttpServer:
    """An app being served; ``server`` is uvicorn's (its open connections, for one)."""

    def __init__(
        self, server: _InLoopServer, task: asyncio.Task[None], host: str, port: int
    ) -> None:
        self.server: uvicorn.Server = server
        self._server = server
        self._task = task
        self.host = host
        self.port = port

    @property
    def host_port(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting, give open requests the grace period, then close."""
        self._server.request_stop()
        await asyncio.shield(self._task)

    async def wait_stopped(self) -> None:
        """Return when the server has stopped (after :meth:`stop`, or if it failed)."""
        await asyncio.shield(self._task)


async def start_http_server(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    name: str,
    grace_s: float,
    **options: Any,
) -> RunningHttpServer:
    """Serve ``app`` on ``host:port`` (0: any free port) from the running event loop.

    ``name`` says which server it is in errors and task names; ``options`` go to
    ``uvicorn.Config`` (TLS files, keep-alive).
    """
    sock = listen_tcp(host, port, name=name)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",
        server_header=False,
        timeout_graceful_shutdown=math.ceil(grace_s),
        **options,
    )
    server = _InLoopServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"{name} server")
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            # uvicorn offers a flag, not an event: poll it.
            while not server.started:
                if task.done():
                    task.result()  # raises what stopped it
                    raise RuntimeError(f"the {name} server stopped while starting")
                await asyncio.sleep(0.01)
    except BaseException:
        server.request_stop()
        sock.close()
        raise
    bound_host, bound_port = sock.getsockname()[:2]
    return RunningHttpServer(server, task, str(bound_host), int(bound_port))
