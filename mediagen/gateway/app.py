"""The gateway as an ASGI application: routes from the descriptors, calls through a channel.

Request handling, in grpc-gateway's order: decode the body (``body: "*"`` or a field), then set
the path variables (they win over the body), then bind the query string (unless the body is
``*``); headers become metadata; the call goes through the channel; the answer is the
response (or its ``response_body`` field) as JSON, or an NDJSON/SSE stream. Besides the routes
of the services it serves ``/openapi.json``, ``/docs``, ``/api/v1/health`` and, when a files
root is set, ``/files/{key}``, when it is given a metrics endpoint, ``/metrics`` (then
the server measures every request: :mod:`mediagen.metrics.http`), and, when it is given a
webhook receiver, ``POST /webhooks/replicate`` (:mod:`mediagen.gateway.webhooks`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from starlette.types import Message as AsgiMessage
from starlette.types import Receive, Scope, Send

from mediagen.config import HttpSettings
from mediagen.gateway import asgi, docs, errors, jsonmap, limits
from mediagen.gateway.contract_comments import COMMENTS
from mediagen.gateway.files import PREFIX as FILES_PREFIX
from mediagen.gateway.files import FileNotServed, FileRefused, LocalFiles
from mediagen.gateway.health import PATH as HEALTH_PATH
from mediagen.gateway.health import HealthRoute
from mediagen.gateway.metadata import BadHeader, incoming_metadata, outgoing_headers, parse_timeout
from mediagen.gateway.openapi import build_openapi
from mediagen.gateway.query import bind_query
from mediagen.gateway.routes import BadPathValue, NoRoute, Route, Router
from mediagen.gateway.rules import Binding, RuleError, bindings_for, resolve_field_path
from mediagen.gateway.streaming import StreamOptions, StreamRelay, default_stream_options
from mediagen.gateway.upstream import Upstream, build_upstream
from mediagen.gateway.values import BadValue, descriptor_of, set_from_text
from mediagen.gateway.webhooks import WEBHOOK_PATH, WebhookReceiver
from mediagen.metrics.http import METRICS_PATH, ROUTE_KEY, MetricsEndpoint

log = logging.getLogger(__name__)

OPENAPI_PATH = "/openapi.json"


@dataclass(frozen=True)
class Endpoint:
    """What a route leads to."""

    binding: Binding
    upstream: Upstream
    stream: StreamOptions | None


def _default_services() -> list[ServiceDescriptor]:
    from mediagen.v1 import media_generation_service_pb2

    return list(media_generation_service_pb2.DESCRIPTOR.services_by_name.values())


class GatewayApp:
    """ASGI app transcoding JSON/HTTP to gRPC for the annotated methods of ``services``."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        services: Sequence[ServiceDescriptor],
        *,
        files_root: Path | None = None,
        files_secret_key: str | None = None,
        comments: Mapping[str, str] | None = None,
        stream_options: Mapping[str, StreamOptions] | None = None,
        heartbeat_s: float = 15.0,
        health_timeout_s: float = 5.0,
        http: HttpSettings | None = None,
        metrics: MetricsEndpoint | None = None,
        webhooks: WebhookReceiver | None = None,
    ) -> None:
        self.heartbeat_s = heartbeat_s
        self.webhooks = webhooks
        #: Serves ``/metrics``; set, the server also measures every request.
        self.metrics = metrics
        self.health_timeout_s = health_timeout_s
        #: Sizes, times and CORS; the server (:mod:`.server`) reads the connection limits.
        self.http = http or HttpSettings()
        self.files = None
        if files_root is not None:
            if not files_secret_key:
                raise ValueError("files_root needs files_secret_key: media URLs are signed")
            self.files = LocalFiles(files_root, secret_key=files_secret_key)
        bindings = [b for service in services for b in bindings_for(service)]
        self.router: Router[Endpoint] = Router(self._routes(channel, bindings, stream_options))
        self._health = HealthRoute(channel, timeout_s=health_timeout_s)
        self.openapi = build_openapi(
            bindings,
            services,
            comments={**COMMENTS, **(comments or {})},
            stream_options={
                r.target.binding.method.full_name: r.target.stream
                for r in self.router.routes
                if r.target.stream
            },
            health_path=HEALTH_PATH,
            files_prefix=FILES_PREFIX if self.files else None,
        )
        self._openapi_body = jsonmap.dumps(self.openapi)
        self._streams: set[StreamRelay] = set()

    @staticmethod
    def _routes(
        channel: grpc.aio.Channel,
        bindings: Iterable[Binding],
        stream_options: Mapping[str, StreamOptions] | None,
    ) -> list[Route[Endpoint]]:
        upstreams: dict[str, Upstream] = {}
        routes: list[Route[Endpoint]] = []
        seen: set[tuple[str, str]] = set()
        for binding in bindings:
            method = binding.method
            key = (binding.http_method, binding.template.text)
            if key in seen:
                raise RuleError(f"{method.full_name}: {key[0]} {key[1]} is bound twice")
            seen.add(key)
            if method.full_name not in upstreams:
                upstreams[method.full_name] = build_upstream(channel, method)
            stream = None
            if method.server_streaming:
                given = (stream_options or {}).get(method.full_name)
                stream = given or default_stream_options(binding)
            endpoint = Endpoint(binding, upstreams[method.full_name], stream)
            routes.append(Route(binding.http_method, binding.template, endpoint))
        return routes

    def close_streams(self) -> None:
        """End every open stream with UNAVAILABLE (called when the gateway stops)."""
        for relay in list(self._streams):
            relay.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = False

        async def tracked_send(message: AsgiMessage) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._dispatch(scope, receive, tracked_send)
        except errors.GatewayError as exc:
            if not started:
                await asgi.send_status(send, exc.to_status(), exc.http_status, exc.headers)
        except asgi.ClientGone:
            return
        except Exception:
            log.exception("gateway: %s %s failed", scope["method"], scope["path"])
            if not started:
                await asgi.send_status(send, asgi.internal("internal error"))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close_streams()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else quote(scope["path"])
        path = path.split("?", 1)[0]
        limits.check_head(scope, self.http.max_header_bytes)
        if await self._builtin(method, path, scope, receive, send):
            return
        try:
            found = self.router.match(method, path)
        except BadPathValue as exc:
            raise errors.invalid_argument(str(exc)) from exc
        if isinstance(found, NoRoute):
            if found.allowed:
                raise errors.method_not_allowed(found.allowed)
            raise errors.GatewayError(grpc.StatusCode.NOT_FOUND, "Not Found")
        scope[ROUTE_KEY] = found.route.target.binding.template.text  # the metrics' route label
        await self._call(found.route.target, found.params, scope, receive, send)

    async def _builtin(
        self, method: str, path: str, scope: Scope, receive: Receive, send: Send
    ) -> bool:
        """Serve the gateway's own routes; False if ``path`` is not one of them."""
        root = scope.get("root_path", "")
        if path == OPENAPI_PATH:
            asgi.only(method, "GET")
            await asgi.send_json(send, 200, self._openapi_body)
        elif path in (docs.DOCS_PATH, docs.DOCS_PATH + "/"):
            asgi.only(method, "GET")
            title = self.openapi["info"]["title"]
            page = docs.docs_page(root_path=root, spec_path=OPENAPI_PATH, title=title)
            await page(scope, receive, send)
        elif path.startswith(docs.DOCS_PATH + "/"):
            asgi.only(method, "GET", "HEAD")
            response = docs.asset(path[len(docs.DOCS_PATH) + 1 :])
            if response is None:
                raise errors.GatewayError(grpc.StatusCode.NOT_FOUND, "Not Found")
            await response(scope, receive, send)
        elif path == HEALTH_PATH:
            asgi.only(method, "GET")
            await self._health(scope, send)
        elif path == WEBHOOK_PATH and self.webhooks is not None:
            scope[ROUTE_KEY] = WEBHOOK_PATH
            await self.webhooks(scope, receive, send)
        elif path == METRICS_PATH and self.metrics is not None:
            asgi.only(method, "GET", "HEAD")
            await self.metrics(scope, receive, send)
        elif self.files is not None and path.startswith(FILES_PREFIX):
            asgi.only(method, "GET", "HEAD")
            try:
                key = unquote(path[len(FILES_PREFIX) :], errors="strict")
                await self.files.serve(key, scope, receive, send)
            except FileRefused as exc:
                raise errors.GatewayError(grpc.StatusCode.PERMISSION_DENIED, str(exc)) from exc
            except (FileNotServed, UnicodeDecodeError) as exc:
                raise errors.GatewayError(grpc.StatusCode.NOT_FOUND, "Not Found") from exc
        else:
            return False
        return True

    async def _call(
        self,
        endpoint: Endpoint,
        params: Mapping[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        headers = asgi.scope_headers(scope)
        try:
            request, timeout = await self._request(endpoint, params, scope, receive, dict(headers))
        except jsonmap.BadBody as exc:
            raise errors.invalid_argument(
                str(exc), field=exc.field or jsonmap.BODY_FIELD, description=exc.description
            ) from exc
        except BadValue as exc:
            raise errors.invalid_argument(
                str(exc), field=exc.field, description=exc.description
            ) from exc
        except BadHeader as exc:
            raise errors.invalid_argument(str(exc)) from exc
        client = scope.get("client")
        metadata = incoming_metadata(headers, peer_host=client[0] if client else None)
        limits.check_metadata(metadata)
        call = endpoint.upstream.callable(request, metadata=metadata, timeout=timeout)
        if endpoint.stream is None:
            await self._unary(call, endpoint.binding, receive, send)
            return
        sse = "text/event-stream" in dict(headers).get("accept", "").lower()
        relay = StreamRelay(
            call, endpoint.binding, sse=sse, options=endpoint.stream, heartbeat_s=self.heartbeat_s
        )
        self._streams.add(relay)
        try:
            await relay.run(receive, send)
        finally:
            self._streams.discard(relay)

    async def _request(
        self,
        endpoint: Endpoint,
        params: Mapping[str, str],
        scope: Scope,
        receive: Receive,
        headers: Mapping[str, str],
    ) -> tuple[Message, float | None]:
        """The request message (body, then path, then query, then Last-Event-ID) and timeout."""
        binding = endpoint.binding
        request = endpoint.upstream.request_class()
        if binding.body:
            raw = await self._body(headers, receive)
            jsonmap.parse_body(raw, request, binding.body)
        for field_path, text in params.items():
            fields = resolve_field_path(descriptor_of(request), field_path)
            if fields is not None:
                set_from_text(request, fields, [text], field_path)
        if binding.body != "*":
            excluded = [*binding.path_fields, *([binding.body] if binding.body else [])]
            bind_query(request, asgi.query_params(scope), excluded=excluded)
        last_id = headers.get("last-event-id", "").strip()
        if last_id and endpoint.stream is not None and endpoint.stream.resume_field:
            field = descriptor_of(request).fields_by_name[endpoint.stream.resume_field]
            set_from_text(request, [field], [last_id], "Last-Event-ID")
        timeout = parse_timeout(headers["grpc-timeout"]) if "grpc-timeout" in headers else None
        return request, timeout

    async def _body(self, headers: Mapping[str, str], receive: Receive) -> bytes:
        """The JSON body: 413 by its declared length before reading, 415 unless it is JSON,
        408 if it does not arrive in time."""
        limit = self.http.max_body_bytes
        length = limits.declared_length(headers)
        if length is not None and length > limit:
            raise limits.body_too_large(limit)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        limits.check_json(headers, has_body=bool(length) or chunked)
        try:
            async with asyncio.timeout(self.http.body_timeout_s):
                return await asgi.read_body(receive, limit)
        except TimeoutError:
            raise errors.GatewayError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"request body not received within {self.http.body_timeout_s:g}s",
                http_status=408,
                headers={"connection": "close"},
            ) from None

    async def _unary(self, call: Any, binding: Binding, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()
        watcher = asyncio.create_task(asgi.cancel_on_disconnect(receive, call, gone))
        try:
            response = await call
        except grpc.aio.AioRpcError as exc:
            status = errors.status_from_rpc_error(exc)
            await asgi.send_status(send, status, metadata=exc.initial_metadata())
            return
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if gone.is_set() and task is not None and not task.cancelling():
                return  # the client left; its call was cancelled
            raise
        finally:
            watcher.cancel()
        try:
            body = jsonmap.dumps(jsonmap.response_to_obj(response, binding.response_body))
        except jsonmap.RenderError as exc:
            log.error("gateway: %s", exc)
            await asgi.send_status(send, asgi.internal("failed to marshal response"))
            return
        await asgi.send_json(send, 200, body, outgoing_headers(await call.initial_metadata()))


def build_gateway_app(
    channel: grpc.aio.Channel,
    *,
    services: Sequence[ServiceDescriptor] | None = None,
    files_root: Path | None = None,
    files_secret_key: str | None = None,
    comments: Mapping[str, str] | None = None,
    stream_options: Mapping[str, StreamOptions] | None = None,
    heartbeat_s: float = 15.0,
    http: HttpSettings | None = None,
    metrics: MetricsEndpoint | None = None,
    webhooks: WebhookReceiver | None = None,
) -> GatewayApp:
    """The gateway for ``services`` (default: mediagen.v1.MediaGenerationService) over ``channel``.

    ``files_root``: serve local-storage media at ``/files/{key}`` (None: no such route), to URLs
    signed with ``files_secret_key`` (the service's SECRET_KEY; required with a root).
    ``comments``: extra proto comments for the OpenAPI document (see :mod:`.comments`).
    ``stream_options``: per-method SSE id/resume fields, by method full name.
    ``http``: request limits and CORS (default: :class:`mediagen.config.HttpSettings`).
    ``metrics``: serve ``/metrics`` with it, and measure every request (None: neither).
    ``webhooks``: serve ``POST /webhooks/replicate`` with it (None: no such route).
    """
    return GatewayApp(
        channel,
        list(services) if services is not None else _default_services(),
        files_root=files_root,
        files_secret_key=files_secret_key,
        comments=comments,
        stream_options=stream_options,
        heartbeat_s=heartbeat_s,
        http=http,
        metrics=metrics,
        webhooks=webhooks,
    )
