"""Running the gateway on uvicorn: inside an existing event loop, or as its own process.

uvicorn (httptools) with a raw ASGI app was chosen over aiohttp by measurement (loopback, one
server process, a 1 KB JSON GET, three runs on this 2-core machine): at 16 connections it served
9,200-10,900 requests/s (p99 3-5 ms) against aiohttp's 6,000-7,900 (p99 6-7 ms); at one
connection aiohttp was a little ahead (2,500-3,200 against 2,100-2,500 requests/s, p50 0.3 ms
for both). Starlette and uvicorn were already the project's HTTP stack (the Replicate emulator).

The embedded server (run by :mod:`mediagen.http_server`, as the emulator is) leaves signal
handling to its host (``mediagen serve`` owns SIGTERM): :class:`RunningGateway` is stopped by
calling :meth:`RunningGateway.stop`, which ends open streams with UNAVAILABLE, stops accepting
connections and lets in-flight requests finish for up to the grace period.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from mediagen.config import Settings, TLSSettings
from mediagen.gateway.app import GatewayApp, build_gateway_app
from mediagen.http_server import RunningHttpServer, start_http_server
from mediagen.tls import ClientTLS, uvicorn_ssl_options


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
    http = await start_http_server(app, host, port, name="HTTP", grace_s=grace_s, **ssl_options)
    scheme = "https" if tls is not None else "http"
    return RunningGateway(app, host, http.port, http, scheme)


async def run_gateway(
    settings: Settings, grpc_target: str, *, upstream_tls: ClientTLS | None = None
) -> None:
    """``mediagen gateway``: serve on settings.host:settings.http_port until cancelled, calling
    the API at ``grpc_target`` (over TLS with ``upstream_tls``)."""
    channel = (
        grpc.aio.secure_channel(grpc_target, upstream_tls.grpc_credentials())
        if upstream_tls is not None
        else grpc.aio.insecure_channel(grpc_target)
    )
    try:
        files_root = settings.media_dir if settings.storage_type == "local" else None
        app = build_gateway_app(
            channel, files_root=files_root, files_secret_key=settings.secret_key
        )
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
