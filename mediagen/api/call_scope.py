"""Running each call of a method inside a scope of its own: the shape every server interceptor
takes that sets something for the whole call (the caller, the request id).

Interceptors wrap each method handler's behaviour rather than deciding in
``intercept_service``, because only the behaviour receives the call's ``ServicerContext`` (its
metadata, its TLS peer). A :data:`CallScope` is entered before the servicer runs and left when
its answer (or its last streamed message, or its error) is out; context variables set inside
it are seen by the servicer and everything it awaits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeAlias

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the stubs
CallScope = Callable[[Context], AbstractAsyncContextManager[object]]


def within(handler: Handler, scope: CallScope) -> Handler:
    """``handler`` with each of its calls run inside ``scope(context)``."""
    options: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        unary: Any = handler.unary_unary  # grpc's stubs type behaviours for sync contexts

        async def unary_unary(request: Any, context: Context) -> Any:
            async with scope(context):
                return await unary(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **options)
    if handler.stream_unary is not None:
        client_stream: Any = handler.stream_unary  # grpc's stubs type behaviours for sync contexts

        async def stream_unary(requests: Any, context: Context) -> Any:
            async with scope(context):
                return await client_stream(requests, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **options)
    if handler.unary_stream is not None:
        server_stream: Any = handler.unary_stream  # grpc's stubs type behaviours for sync contexts

        async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            async with scope(context):
                async for message in _responses(server_stream(request, context)):
                    yield message

        return grpc.unary_stream_rpc_method_handler(unary_stream, **options)
    bidi: Any = handler.stream_stream  # grpc's stubs type behaviours for sync contexts

    async def stream_stream(requests: Any, context: Context) -> AsyncIterator[Any]:
        async with scope(context):
            async for message in _responses(bidi(requests, context)):
                yield message

    return grpc.stream_stream_rpc_method_handler(stream_stream, **options)


async def _responses(result: Any) -> AsyncIterator[Any]:
    """The messages of a streaming behaviour: an async generator's, or none from one that writes
    with ``context.write`` and returns."""
    if hasattr(result, "__aiter__"):
        async for message in result:
            yield message
    else:
        await result
