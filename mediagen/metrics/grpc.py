"""The gRPC server interceptor: calls by method and final code, unary latency by method.

It runs before authentication, so a refused call counts as the UNAUTHENTICATED or
PERMISSION_DENIED it gets, and before request decoding, so an undecodable request counts as
the INVALID_ARGUMENT it gets. Methods the server does not serve
are labelled ``unknown``: a caller cannot create series by inventing names. Streams (WatchJob)
are counted when they end; their length is not a latency, so they are not timed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from mediagen.metrics import definitions as m

Context = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the stubs


def _code_name(context: Context, error: BaseException | None) -> str:
    """The status the call ends with: what the servicer set or aborted with, else what the
    exception means to grpc.aio (cancelled by the client, or an unexpected error)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED.name
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN.name
    return grpc.StatusCode.OK.name


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            # Unimplemented: grpc answers it itself, and the name is the caller's invention.
            m.GRPC_REQUESTS.labels("unknown", grpc.StatusCode.UNIMPLEMENTED.name).inc()
            return None
        return _measured(handler, handler_call_details.method)


def _measured(handler: Handler, method: str) -> Handler:
    options: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    requests = m.GRPC_REQUESTS
    latency = m.GRPC_LATENCY.labels(method)
    if handler.unary_unary is not None:
        unary: Any = handler.unary_unary  # grpc's stubs type behaviours for sync contexts

        async def unary_unary(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                return await unary(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                latency.observe(time.perf_counter() - started)
                requests.labels(method, _code_name(context, error)).inc()

        return grpc.unary_unary_rpc_method_handler(unary_unary, **options)
    if handler.unary_stream is not None:
        stream: Any = handler.unary_stream  # grpc's stubs type behaviours for sync contexts
        if not inspect.isasyncgenfunction(stream):  # writes with context.write(), returns None
            return grpc.unary_stream_rpc_method_handler(_counted(stream, method), **options)

        async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            error: BaseException | None = None
            try:
                async for response in stream(request, context):
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                requests.labels(method, _code_name(context, error)).inc()

        return grpc.unary_stream_rpc_method_handler(unary_stream, **options)
    # Client-streaming methods (server reflection): left as they are.
    return handler


def _counted(behavior: Any, method: str) -> Callable[[Any, Context], Awaitable[None]]:
    async def handle(request: Any, context: Context) -> None:
        error: BaseException | None = None
        try:
            await behavior(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            m.GRPC_REQUESTS.labels(method, _code_name(context, error)).inc()

    return handle
