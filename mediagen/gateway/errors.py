"""Errors as grpc-gateway writes them: a ``google.rpc.Status`` JSON body and a mapped status.

The body is ``{"code": <gRPC code number>, "message": "...", "details": [...]}``; ``details``
is ``[]`` when empty, and each detail is an ``Any`` written with its ``@type``. The HTTP status
comes from :data:`mediagen.errors.HTTP_STATUS`. On RESOURCE_EXHAUSTED and UNAVAILABLE a
``google.rpc.RetryInfo`` detail also becomes a ``Retry-After`` header (whole seconds, rounded
up); UNAUTHENTICATED adds ``WWW-Authenticate: Bearer``. Rich details come from the
``grpc-status-details-bin`` trailer; when its code disagrees with the call's, it is ignored, as
``grpc_status.rpc_status`` does.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import google.rpc.code_pb2 as code_pb2
import google.rpc.error_details_pb2 as error_details_pb2
import google.rpc.status_pb2 as status_pb2
import grpc
from google.protobuf import any_pb2, json_format
from google.protobuf.message import DecodeError, Message

from mediagen.errors import MAX_MESSAGE_BYTES, bounded, http_status_for

STATUS_DETAILS_KEY = "grpc-status-details-bin"

_RETRY_AFTER_CODES = frozenset({code_pb2.RESOURCE_EXHAUSTED, code_pb2.UNAVAILABLE})


@dataclass
class GatewayError(Exception):
    """An error the gateway itself answers (bad request, no route, ...), as a Status.

    ``http_status`` overrides the table (405 for a wrong method, as grpc-gateway does).
    """

    code: grpc.StatusCode
    message: str
    details: Sequence[Message] = field(default_factory=tuple)
    http_status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def to_status(self) -> status_pb2.Status:
        packed = []
        for detail in self.details:
            holder = any_pb2.Any()
            holder.Pack(detail)
            packed.append(holder)
        message = bounded(self.message, MAX_MESSAGE_BYTES)  # it may quote the caller's input
        return status_pb2.Status(code=self.code.value[0], message=message, details=packed)


def invalid_argument(message: str, *, field: str = "", description: str = "") -> GatewayError:
    """400 INVALID_ARGUMENT, with a BadRequest field violation when ``field`` is given."""
    details: list[Message] = []
    if field:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=bounded(field), description=bounded(description or message)
        )
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, message, details)


def method_not_allowed(allowed: Sequence[str]) -> GatewayError:
    """405 with an UNIMPLEMENTED body and ``Allow``, as grpc-gateway's routing errors."""
    headers = {"allow": ", ".join(allowed)}
    return GatewayError(
        grpc.StatusCode.UNIMPLEMENTED, "Method Not Allowed", http_status=405, headers=headers
    )


def status_from_rpc_error(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The ``google.rpc.Status`` of a failed call, with rich details when the server sent them."""
    status = status_pb2.Status(code=error.code().value[0], message=error.details() or "")
    trailing = error.trailing_metadata() or ()
    for key, value in trailing:
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            rich = status_pb2.Status.FromString(value)
        except DecodeError:
            break
        if rich.code == status.code:
            status.details.extend(rich.details)
        break
    return status


def detail_to_obj(detail: any_pb2.Any) -> dict[str, object]:
    """An Any detail as JSON; one of a type this process does not know keeps its raw bytes."""
    try:
        return json_format.MessageToDict(detail, always_print_fields_with_no_presence=True)
    except (TypeError, KeyError, ValueError):
        return {"@type": detail.type_url, "value": base64.b64encode(detail.value).decode()}


def status_to_obj(status: status_pb2.Status) -> dict[str, object]:
    """grpc-gateway's error body."""
    return {
        "code": status.code,
        "message": status.message,
        "details": [detail_to_obj(d) for d in status.details],
    }


def retry_after_s(status: status_pb2.Status) -> int | None:
    """Whole seconds from a RetryInfo detail on RESOURCE_EXHAUSTED / UNAVAILABLE, else None."""
    if status.code not in _RETRY_AFTER_CODES:
        return None
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            delay = float(info.retry_delay.seconds) + info.retry_delay.nanos / 1e9
            return int(max(0, math.ceil(delay)))
    return None


def error_headers(status: status_pb2.Status) -> dict[str, str]:
    """Headers an error adds: ``Retry-After`` when the status carries a RetryInfo, and
    ``WWW-Authenticate: Bearer`` on UNAUTHENTICATED (RFC 9110 requires it with a 401)."""
    headers: dict[str, str] = {}
    delay = retry_after_s(status)
    if delay is not None:
        headers["retry-after"] = str(delay)
    if status.code == code_pb2.UNAUTHENTICATED:
        headers["www-authenticate"] = 'Bearer realm="mediagen"'
    return headers


def http_status_of(status: status_pb2.Status) -> int:
    """HTTP status for a Status's code (the shared table)."""
    return http_status_for(status.code)
