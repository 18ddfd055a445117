"""Requests that do not decode are the caller's INVALID_ARGUMENT, not UNKNOWN.

grpc.aio runs a handler's ``request_deserializer`` itself and answers UNKNOWN ("Unexpected
<class 'DecodeError'>") when it raises: bytes that are not a message, invalid UTF-8 in a string
field, nesting past protobuf's recursion limit. :class:`DecodeRequests` takes the deserializer
out of each unary-request handler and runs it inside the call instead, so a failure becomes
INVALID_ARGUMENT with a BadRequest naming the field (:func:`mediagen.api.wire.blame`) when one
can be named. Streaming-request methods (reflection) are left as they are.

Oversized requests never get here: gRPC itself answers RESOURCE_EXHAUSTED past the server's
``grpc.max_receive_message_length``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from grpc_status import rpc_status

from mediagen.api.wire import blame
from mediagen.errors import FieldViolation, InvalidArgument

Context = grpc.aio.ServicerContext[Any, Any]
Deserializer = Callable[[bytes], Any]


_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class DecodeRequests(grpc.aio.ServerInterceptor):
    """Deserialize unary requests inside the call; undecodable ones are INVALID_ARGUMENT."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        wrapped: grpc.RpcMethodHandler[_Req, _Resp] | None = _decoding(
            await continuation(handler_call_details)
        )
        return wrapped


def _decoding(handler: Any) -> Any:
    """``handler`` taking raw bytes and decoding them itself (typed loosely: grpc's stubs
    describe the synchronous handler)."""
    if handler is None or handler.request_streaming or handler.request_deserializer is None:
        return handler
    deserialize: Deserializer = handler.request_deserializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary(handler.unary_unary, deserialize),
            response_serializer=handler.response_serializer,
        )
    if inspect.isasyncgenfunction(handler.unary_stream):
        behavior: Any = _stream(handler.unary_stream, deserialize)
    else:  # a handler that writes with context.write() and returns None
        behavior = _unary(handler.unary_stream, deserialize)
    return grpc.unary_stream_rpc_method_handler(
        behavior, response_serializer=handler.response_serializer
    )


async def decode(raw: bytes, deserialize: Deserializer, context: Context) -> Any:
    """The request message, or an INVALID_ARGUMENT abort saying what is wrong with ``raw``."""
    try:
        return deserialize(raw)
    except DecodeError:
        pass
    message_class = getattr(deserialize, "__self__", None)
    descriptor = getattr(message_class, "DESCRIPTOR", None)
    name = getattr(descriptor, "full_name", "the request message")
    field = blame(descriptor, raw) if descriptor is not None else None
    if field is None:
        error = InvalidArgument([], f"request is not a valid {name} (undecodable bytes)")
    else:
        error = InvalidArgument(
            [FieldViolation(field, "cannot be decoded (invalid UTF-8, or nested too deeply)")],
            f"request is not a valid {name}: {field} cannot be decoded",
        )
    status = error.to_status()
    if not error.violations:  # no field to name: ErrorInfo alone, no empty BadRequest
        del status.details[1:]
    await context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def _unary(
    behavior: Callable[[Any, Context], Awaitable[Any]], deserialize: Deserializer
) -> Callable[[bytes, Context], Awaitable[Any]]:
    async def handle(raw: bytes, context: Context) -> Any:
        return await behavior(await decode(raw, deserialize, context), context)

    return handle


def _stream(
    behavior: Callable[[Any, Context], AsyncIterator[Any]], deserialize: Deserializer
) -> Callable[[bytes, Context], AsyncIterator[Any]]:
    async def handle(raw: bytes, context: Context) -> AsyncIterator[Any]:
        async for response in behavior(await decode(raw, deserialize, context), context):
            yield response

    return handle
