"""Server-streaming methods over HTTP: newline-delimited JSON, or Server-Sent Events.

NDJSON (the default, grpc-gateway's ``ForwardResponseStream``): ``Content-Type:
application/x-ndjson``; each message is one line ``{"result": <message>}``; an error is a last
line ``{"error": <google.rpc.Status>}``. If the stream fails before its first message the
response is an ordinary error (mapped HTTP status, JSON body), so an unknown job is a real 404.

SSE (when the request's ``Accept`` includes ``text/event-stream``): each message is an event
``id: <sequence>`` / ``data: <message>``; the id is the message's integer id field (by default a
top-level ``sequence``) so a browser's ``EventSource`` resumes with ``Last-Event-ID``, which the
gateway copies into the request's resume field (by default ``after_<id field>``). An error is
``event: error`` with the Status as data; a stream that ends OK sends ``event: end`` (so the
client knows not to reconnect). A comment line is sent after ``heartbeat_s`` without events.

Either way, a client that disconnects cancels the upstream call, and the gateway's shutdown ends
open streams with UNAVAILABLE ("reconnect and resume").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import google.rpc.code_pb2 as code_pb2
import google.rpc.status_pb2 as status_pb2
import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from starlette.types import Receive, Send

from mediagen.gateway.errors import (
    error_headers,
    http_status_of,
    status_from_rpc_error,
    status_to_obj,
)
from mediagen.gateway.jsonmap import RenderError, dumps, message_to_obj
from mediagen.gateway.metadata import outgoing_headers
from mediagen.gateway.rules import Binding

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"
HEARTBEAT = b": keep-alive\n\n"
SSE_END = b"event: end\ndata: {}\n\n"

_INTEGER_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


@dataclass(frozen=True)
class StreamOptions:
    """Per-method SSE settings: which streamed field is the event id, which request field
    ``Last-Event-ID`` sets. Either may be None."""

    id_field: str | None = None
    resume_field: str | None = None


def _integer_field(message: Descriptor, name: str) -> bool:
    field = message.fields_by_name.get(name)
    return field is not None and field.type in _INTEGER_TYPES and not field.is_repeated


def streamed_type(binding: Binding) -> Descriptor:
    """The message type each HTTP stream item holds (the response, or its response_body)."""
    output = binding.method.output_type
    if binding.response_body:
        field = output.fields_by_name[binding.response_body]
        if field.message_type is not None:
            return field.message_type
    return output


def default_stream_options(binding: Binding, id_field: str = "sequence") -> StreamOptions:
    """``sequence`` as the event id when the streamed message has it, and ``after_sequence`` as
    the resume field when the request has it."""
    if not _integer_field(streamed_type(binding), id_field):
        return StreamOptions()
    resume = f"after_{id_field}"
    if not _integer_field(binding.method.input_type, resume):
        return StreamOptions(id_field=id_field)
    return StreamOptions(id_field=id_field, resume_field=resume)


def ndjson_frame(key: str, value: object) -> bytes:
    """One NDJSON line, ``{"result": ...}`` or ``{"error": ...}``."""
    return dumps({key: value}) + b"\n"


def sse_frame(data: object, *, event_id: str | None = None, event: str | None = None) -> bytes:
    """One Server-Sent Event (the JSON data is a single line)."""
    head = ""
    if event_id is not None:
        head += f"id: {event_id}\n"
    if event is not None:
        head += f"event: {event}\n"
    return head.encode() + b"data: " + dumps(data) + b"\n\n"


class _End:
    pass


@dataclass(frozen=True)
class _Failed:
    status: status_pb2.Status


_END = _End()
#: What the reader hands the relay: a message, the end, or how the call failed.
_Item = Message | _End | grpc.aio.AioRpcError | _Failed
_SHUTDOWN_STATUS = status_pb2.Status(
    code=code_pb2.UNAVAILABLE, message="the gateway is shutting down; reconnect and resume"
)


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class StreamRelay:
    """Relays one server-streaming call to one HTTP response."""

    def __init__(
        self,
        call: Any,  # grpc.aio.UnaryStreamCall
        binding: Binding,
        *,
        sse: bool,
        options: StreamOptions,
        heartbeat_s: float,
        buffer: int = 8,
    ) -> None:
        self.call = call
        self.binding = binding
        self.sse = sse
        self.options = options
        self.heartbeat_s = heartbeat_s
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(buffer)
        self._started = False
        self._closing = False
        self._pump: asyncio.Task[None] | None = None

    async def run(self, receive: Receive, send: Send) -> None:
        """Relay until the call ends, the client goes away, or :meth:`close` is called."""
        reader = asyncio.create_task(self._read())
        self._pump = pump = asyncio.create_task(self._relay(send))
        watcher = asyncio.create_task(_wait_disconnect(receive))
        try:
            done, _ = await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.call.cancel()  # a no-op once the call has ended
            for task in (reader, pump, watcher):
                task.cancel()
            await asyncio.gather(reader, pump, watcher, return_exceptions=True)
        if watcher in done:
            return
        if pump.cancelled():
            if self._closing:
                await self._fail(send, _SHUTDOWN_STATUS, None)
            return
        error = pump.exception()
        if error is not None:
            raise error

    def close(self) -> None:
        """End the stream now with UNAVAILABLE (the gateway is stopping)."""
        self._closing = True
        if self._pump is not None:
            self._pump.cancel()

    async def _read(self) -> None:
        try:
            async for message in self.call:
                await self._queue.put(message)
            await self._queue.put(_END)
        except grpc.aio.AioRpcError as exc:
            await self._queue.put(exc)
        except Exception:
            # Not a gRPC status (a response that does not parse, for example): the stream
            # still ends with an error the client can see.
            log.exception("gateway: reading %s failed", self.binding.method.full_name)
            failed = status_pb2.Status(code=code_pb2.INTERNAL, message="stream failed")
            await self._queue.put(_Failed(failed))

    async def _next(self, send: Send) -> _Item:
        if not self.sse:
            return await self._queue.get()
        while True:
            try:
                return await asyncio.wait_for(self._queue.get(), self.heartbeat_s)
            except TimeoutError:
                await self._start(send, None)
                await send({"type": "http.response.body", "body": HEARTBEAT, "more_body": True})

    async def _relay(self, send: Send) -> None:
        while True:
            item = await self._next(send)
            if isinstance(item, _End):
                if not self._started:
                    await self._start(send, await self.call.initial_metadata())
                await self._finish(send, SSE_END if self.sse else b"")
                return
            if isinstance(item, grpc.aio.AioRpcError):
                await self._fail(send, status_from_rpc_error(item), item)
                return
            if isinstance(item, _Failed):
                await self._fail(send, item.status, None)
                return
            if not self._started:
                await self._start(send, await self.call.initial_metadata())
            try:
                frame = self._frame(item)
            except RenderError as exc:
                status = status_pb2.Status(code=code_pb2.INTERNAL, message=str(exc))
                await self._fail(send, status, None)
                return
            await send({"type": "http.response.body", "body": frame, "more_body": True})

    def _frame(self, message: Message) -> bytes:
        body = self.binding.response_body
        item = getattr(message, body) if body else message
        if not isinstance(item, Message):
            raise RenderError(f"{self.binding.method.full_name}: response_body is not a message")
        value = message_to_obj(item)
        if not self.sse:
            return ndjson_frame("result", value)
        event_id = None
        if self.options.id_field:
            number = getattr(item, self.options.id_field)
            event_id = str(number) if number else None
        return sse_frame(value, event_id=event_id)

    async def _start(self, send: Send, metadata: Any, status: int = 200) -> None:
        if self._started:
            return
        self._started = True
        headers = [
            (b"content-type", (EVENT_STREAM if self.sse else NDJSON).encode()),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in outgoing_headers(metadata)]
        await send({"type": "http.response.start", "status": status, "headers": headers})

    async def _finish(self, send: Send, body: bytes) -> None:
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _fail(
        self, send: Send, status: status_pb2.Status, error: BaseException | None
    ) -> None:
        body = status_to_obj(status)
        if self._started:
            frame = sse_frame(body, event="error") if self.sse else ndjson_frame("error", body)
            await self._finish(send, frame)
            return
        # Nothing sent yet: an ordinary error response with the mapped status.
        metadata = _initial_metadata(error)
        headers: Mapping[str, str] = error_headers(status)
        raw = [(b"content-type", b"application/json")]
        raw += [(k.encode(), v.encode()) for k, v in headers.items()]
        raw += [(k.lower().encode(), v.encode()) for k, v in outgoing_headers(metadata)]
        self._started = True
        await send(
            {"type": "http.response.start", "status": http_status_of(status), "headers": raw}
        )
        await self._finish(send, dumps(body))


def _initial_metadata(error: BaseException | None) -> Any:
    if isinstance(error, grpc.aio.AioRpcError):
        return error.initial_metadata()
    return None
