"""HTTP side of the metrics: the gateway's request middleware and the ``/metrics`` endpoint.

Routes are labelled by template (``/api/v1/jobs/status/{id}``), which the gateway app puts in
the ASGI scope under :data:`ROUTE_KEY` once it has matched one; the gateway's own pages are
named by their fixed paths, and anything else is ``other``, so a scanner's paths never become
series. Latency is measured to the response headers: for a unary call that is the whole
answer, for a stream the time to open it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mediagen.metrics import definitions as m

METRICS_PATH = "/metrics"
#: Where the gateway app records the template of the route it matched.
ROUTE_KEY = "mediagen.route"
#: The gateway's own fixed paths and prefixes, named as themselves.
_FIXED = ("/openapi.json", "/api/v1/health", METRICS_PATH)
_PREFIXES = (("/docs", "/docs"), ("/files/", "/files/{key}"))
#: Methods named as themselves; any other token a client sends is ``OTHER``.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

Refresh = Callable[[], Awaitable[None]]


def method_label(scope: Scope) -> str:
    method: str = scope.get("method", "")
    return method if method in _METHODS else "OTHER"


def route_label(scope: Scope) -> str:
    template = scope.get(ROUTE_KEY)
    if isinstance(template, str):
        return template
    path: str = scope.get("path", "")
    if path in _FIXED:
        return path
    for prefix, label in _PREFIXES:
        if path.startswith(prefix):
            return label
    return "other"


class MeasureRequests:
    """ASGI middleware counting and timing every HTTP request by route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def measured_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                m.HTTP_LATENCY.labels(method_label(scope), route_label(scope)).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            await self.app(scope, receive, measured_send)
        finally:
            # 0: the client left (or the app failed) before any answer was started.
            m.HTTP_REQUESTS.labels(method_label(scope), route_label(scope), str(status)).inc()


def metrics_body() -> tuple[bytes, str]:
    """This process's registry in the text format (what every Prometheus reads)."""
    return generate_latest(m.registry()), CONTENT_TYPE_LATEST


class MetricsEndpoint:
    """ASGI app answering ``GET /metrics`` (after ``refresh``: the database gauges)."""

    def __init__(self, refresh: Refresh | None = None) -> None:
        self.refresh = refresh

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope.get("path") != METRICS_PATH:
            await _plain(send, 404, b"not found; metrics are at /metrics\n")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _plain(send, 405, b"method not allowed\n", [(b"allow", b"GET, HEAD")])
            return
        if self.refresh is not None:
            await self.refresh()
        body, content_type = metrics_body()
        headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})


async def _plain(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
