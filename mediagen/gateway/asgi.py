"""Small ASGI helpers the gateway's handlers share: reading requests, writing JSON answers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

import google.rpc.status_pb2 as status_pb2
import grpc
from starlette.types import Receive, Scope, Send

from mediagen.gateway import errors, jsonmap
from mediagen.gateway.metadata import outgoing_headers

#: More query parameters than this is a bad request.
MAX_QUERY_FIELDS = 1000


class ClientGone(Exception):
    """The client disconnected before its request was read."""


def scope_headers(scope: Scope) -> list[tuple[str, str]]:
    """Request headers as ``(lower-case name, value)`` text pairs."""
    return [
        (bytes(k).decode("latin-1").lower(), bytes(v).decode("latin-1"))
        for k, v in scope["headers"]
    ]


def query_params(scope: Scope) -> list[tuple[str, str]]:
    """Decoded query parameters, in order; 400 if they are not UTF-8 or too many."""
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return []
    try:
        return parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.invalid_argument("the query string cannot be decoded") from exc


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; 413 past ``limit`` bytes, :class:`ClientGone` on disconnect."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise errors.GatewayError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request body exceeds {limit} bytes",
                http_status=413,
                headers={"connection": "close"},  # the rest of the body is not read
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def cancel_on_disconnect(receive: Receive, call: Any, gone: asyncio.Event) -> None:
    """Cancel ``call`` (and set ``gone``) when the client disconnects; run it as a task."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            call.cancel()
            return


def only(method: str, *allowed: str) -> None:
    """405 unless ``method`` is one of ``allowed``."""
    if method not in allowed:
        raise errors.method_not_allowed(allowed)


def internal(message: str) -> status_pb2.Status:
    """An INTERNAL status that says no more than ``message``."""
    return status_pb2.Status(code=grpc.StatusCode.INTERNAL.value[0], message=message)


async def send_json(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()
) -> None:
    """A complete JSON response."""
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_status(
    send: Send,
    status: status_pb2.Status,
    http_status: int | None = None,
    headers: Mapping[str, str] | None = None,
    metadata: Any = None,
) -> None:
    """An error response: the Status as JSON, its HTTP status, Retry-After, Grpc-Metadata-*."""
    extra = [*errors.error_headers(status).items(), *(headers or {}).items()]
    extra += outgoing_headers(metadata)
    body = jsonmap.dumps(errors.status_to_obj(status))
    await send_json(send, http_status or errors.http_status_of(status), body, extra)
