"""Running the gateway on uvicorn: inside an existing event loop, or as its own process.

uvicorn with a raw ASGI app was chosen over aiohttp by measurement (loopback, one server process,
a 1 KB JSON GET, three runs on this 2-core machine, uvicorn then on httptools): at 16 connections
it served 9,200-10,900 requests/s (p99 3-5 ms) against aiohttp's 6,000-7,900 (p99 6-7 ms); at one
connection aiohttp was a little ahead (2,500-3,200 against 2,100-2,500 requests/s, p50 0.3 ms
for both). Starlette and uvicorn were already the project's HTTP stack (the Replicate emulator).
It now runs on h11, under the gateway's own connection limits (see ``start_gateway``).

The embedded server (run by :mod:`mediagen.http_server`, as the emulator is) leaves signal
handling to its host (``mediagen serve`` owns SIGTERM): :class:`RunningGateway` is stopped by
calling :meth:`RunningGateway.stop`, which ends open streams with UNAVAILABLE, stops accepting
connections and lets in-flight requests finish for up to the grace period.

Limits (:class:`mediagen.config.HttpSettings`, carried by the app): request head size and read
time, body read time, idle keep-alive and open connections are enforced by
:class:`mediagen.gateway.protocol.LimitedH11Protocol`; body size, media type and head size by
the app. Every request gets a request id (:mod:`mediagen.gateway.request_ids`). CORS is off
unless origins are configured; then Starlette's ``CORSMiddleware`` answers
preflights and adds ``Access-Control-Allow-Origin`` for those origins only.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import grpc
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from mediagen.config import HttpSettings, Settings, TLSSettings
from mediagen.gateway.app import GatewayApp, build_gateway_app
from mediagen.gateway.protocol import LimitedH11Protocol
from mediagen.gateway.request_ids import RequestIds
from mediagen.gateway.webhooks import WebhookReceiver
from mediagen.http_server import RunningHttpServer, start_http_server
from mediagen.metrics.http import MeasureRequests, MetricsEndpoint
from mediagen.metrics.server import mark_process
from mediagen.tls import ClientTLS, uvicorn_ssl_options

#: Methods and headers a configured cross-site origin may use.
CORS_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
CORS_EXPOSED_HEADERS = ("retry-after", "x-request-id")


@dataclass
class RunningGateway:
    """A gateway serving in the current event loop."""

    app: GatewayApp
    host: str
    port: int
    _http: RunningHttpServer
    scheme: str = "http"  # "https" with TLS

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self._http.host_port}"

    async def stop(self) -> None:
        """Stop gracefully: end streams, refuse new connections, finish in-flight requests."""
        self.app.close_streams()
        await self._http.stop()


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
    http_settings = app.http
    served = with_cors(app, http_settings)
    measured = MeasureRequests(served) if app.metrics is not None else served
    http = await start_http_server(
        # Outermost: it passes a scope of its own on, the one the app records its route in.
        RequestIds(measured),
        host,
        port,
        name="HTTP",
        grace_s=grace_s,
        # h11, not httptools: httptools saved at most 15 % CPU per request without these limits
        # (README, Performance), too little to rebuild them on its parser.
        http=LimitedH11Protocol.under(http_settings),
        h11_max_incomplete_event_size=http_settings.max_header_bytes,
        # The protocol enforces the exact value; uvicorn's own timer only needs whole seconds.
        timeout_keep_alive=math.ceil(http_settings.keepalive_s),
        **ssl_options,
    )
    scheme = "https" if tls is not None else "http"
    return RunningGateway(app, host, http.port, http, scheme)


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
    settings: Settings,
    grpc_target: str,
    *,
    upstream_tls: ClientTLS | None = None,
    webhooks: WebhookReceiver | None = None,
) -> None:
    """``mediagen gateway``: serve on settings.host:settings.http_port until cancelled, calling
    the API at ``grpc_target`` (over TLS with ``upstream_tls``), receiving Replicate's webhooks
    with ``webhooks``."""
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
            webhooks=webhooks,
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
