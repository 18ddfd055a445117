"""Running the gateway on uvicorn: inside an existing event loop, or as its own process.

uvicorn (httptools) with a raw ASGI app was chosen over aiohttp by measurement (loopback, one
server process, a 1 KB JSON GET, three runs on this 2-core machine): at 16 connections it served
9,200-10,900 requests/s (p99 3-5 ms) against aiohttp's 6,000-7,900 (p99 6-7 ms); at one
connection aiohttp was a little ahead (2,500-3,200 against 2,100-2,500 requests/s, p50 0.3 ms
for both). Starlette and uvicorn were already the project's HTTP stack (the Replicate emulator).

The embedded server leaves signal handling to its host (``mediagen serve`` owns SIGTERM):
:class:`RunningGateway` is stopped by calling :meth:`RunningGateway.stop`, which ends open
streams with UNAVAILABLE, stops accepting connections and lets in-flight requests finish for up
to the grace period.

Limits (:class:`mediagen.config.HttpSettings`, carried by the app): request head size and read
time, body read time, idle keep-alive and open connections are enforced by
:class:`mediagen.gateway.protocol.LimitedH11Protocol`; body size, media type and head size by
the app. CORS is off unless origins are configured; then Starlette's ``CORSMiddleware`` answers
preflights and adds ``Access-Control-Allow-Origin`` for those origins only.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import uvicorn
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from mediagen.config import HttpSettings, Settings, TLSSettings
from mediagen.gateway.app import GatewayApp, build_gateway_app
from mediagen.gateway.protocol import LimitedH11Protocol
from mediagen.metrics.http import MeasureRequests, MetricsEndpoint
from mediagen.metrics.server import mark_process
from mediagen.net import listen_tcp
from mediagen.tls import ClientTLS, uvicorn_ssl_options

#: Methods and headers a configured cross-site origin may use.
CORS_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
CORS_EXPOSED_HEADERS = ("retry-after",)


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that does not touch the process's signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningGateway:
    """A gateway serving in the current event loop."""

    app: GatewayApp
    host: str
    port: int
    _server: uvicorn.Server
    _task: asyncio.Task[None]
    scheme: str = "http"  # "https" with TLS

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop gracefully: end streams, refuse new connections, finish in-flight requests."""
        self.app.close_streams()
        self._server.should_exit = True
        await asyncio.shield(self._task)


async def start_gateway(
    app: GatewayApp,
    host: str,
    port: int,
    *,
    grace_s: float = 10.0,
    tls: TLSSettings | None = None,
) -> RunningGateway:
    """Serve ``app`` on ``host:port`` (0: any free port) from the running event loop; HTTPS only
    with ``tls`` (and a client certificate required when it has a client CA)."""
    ssl_options = uvicorn_ssl_options(tls) if tls is not None else {}
    sock = listen_tcp(host, port)
    http = app.http
    served = with_cors(app, http)
    config = uvicorn.Config(
        MeasureRequests(served) if app.metrics is not None else served,
        http=LimitedH11Protocol.under(http),
        h11_max_incomplete_event_size=http.max_header_bytes,
        timeout_keep_alive=math.ceil(http.keepalive_s),  # the protocol uses the exact value
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",
        server_header=False,
        timeout_graceful_shutdown=math.ceil(grace_s),
        **ssl_options,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="gateway")
    while not server.started:
        if task.done():
            sock.close()
            await task  # raises the start-up error
            raise RuntimeError("the gateway stopped while starting")
        await asyncio.sleep(0.01)
    bound_port = int(sock.getsockname()[1])
    scheme = "https" if tls is not None else "http"
    return RunningGateway(app, host, bound_port, server, task, scheme)


def upstream_options(settings: Settings) -> list[tuple[str, int]]:
    """Options of the gateway's channel to the API: its answers may be as large as the API
    sends (``MEDIAGEN_GRPC_MAX_MESSAGE_BYTES``), not only gRPC's 4 MiB client default."""
    size = settings.grpc_max_message_bytes
    return [("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)]


def with_cors(app: ASGIApp, http: HttpSettings) -> ASGIApp:
    """``app`` itself without configured origins (no CORS headers at all), else wrapped."""
    if not http.cors_origins:
        return app
    return CORSMiddleware(
        app,
        allow_origins=list(http.cors_origins),
        allow_methods=list(CORS_METHODS),
        allow_headers=["*"],  # echoes what the preflight asks for; no credentials are allowed
        expose_headers=list(CORS_EXPOSED_HEADERS),
        max_age=600,
    )


async def run_gateway(
    settings: Settings, grpc_target: str, *, upstream_tls: ClientTLS | None = None
) -> None:
    """``mediagen gateway``: serve on settings.host:settings.http_port until cancelled, calling
    the API at ``grpc_target`` (over TLS with ``upstream_tls``)."""
    options = upstream_options(settings)
    channel = (
        grpc.aio.secure_channel(grpc_target, upstream_tls.grpc_credentials(), options=options)
        if upstream_tls is not None
        else grpc.aio.insecure_channel(grpc_target, options=options)
    )
    try:
        files_root = settings.media_dir if settings.storage_type == "local" else None
        app = build_gateway_app(
            channel,
            files_root=files_root,
            files_secret_key=settings.secret_key,
            http=settings.http,
            metrics=MetricsEndpoint() if settings.metrics else None,
        )
        mark_process("gateway")
        running = await start_gateway(
            app,
            settings.host,
            settings.http_port,
            grace_s=settings.shutdown_grace_s,
            tls=settings.tls,
        )
        print(f"gateway listening on {running.url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await running.stop()
    finally:
        await channel.close()
