"""The one error table: each error knows its gRPC code, and every code its HTTP status.

Hierarchy::

    MediagenError                       (any error a caller may see)
    ├── InvalidArgument                 INVALID_ARGUMENT    400  + google.rpc.BadRequest
    ├── NotFound                        NOT_FOUND           404  + google.rpc.ResourceInfo
    │   ├── JobNotFound
    │   └── MediaNotFound
    ├── FailedPrecondition              FAILED_PRECONDITION 400  + PreconditionFailure
    │   └── JobAlreadyFinished
    ├── ResourceExhausted               RESOURCE_EXHAUSTED  429  + google.rpc.RetryInfo
    ├── Unavailable                     UNAVAILABLE         503  + google.rpc.RetryInfo
    ├── Unauthenticated                 UNAUTHENTICATED     401
    │   ├── CredentialsMissing
    │   └── InvalidApiKey
    └── PermissionDenied                PERMISSION_DENIED   403
        ├── ReadOnlyRole
        └── TenantOverrideDenied

The gRPC servicer turns a raised ``MediagenError`` into a rich ``google.rpc.Status`` (always with
``ErrorInfo``, AIP-193); the JSON gateway maps any gRPC code to HTTP with :data:`HTTP_STATUS`,
the table grpc-gateway and Envoy use.

Every text that may hold caller input (messages, field paths, descriptions, ErrorInfo metadata,
resource names) is cut to :data:`MAX_TEXT_BYTES` (:func:`bounded`), and a BadRequest carries at
most :data:`MAX_VIOLATIONS` violations, so a status always fits in gRPC's trailers (8 KiB soft
limit on the receiving side; the rich status travels base64-encoded in
``grpc-status-details-bin``, the message percent-encoded in ``grpc-message``). Without that, a
10 KB id echoed back turns the real error into RESOURCE_EXHAUSTED on the client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

#: ErrorInfo.domain of every error this service raises.
DOMAIN = "mediagen.dev"

#: gRPC status code -> HTTP status (grpc-gateway's HTTPStatusFromCode).
HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,  # deliberately not 412, as grpc-gateway
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


_BY_NUMBER: Mapping[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def http_status_for(code: grpc.StatusCode | int) -> int:
    """HTTP status for a gRPC code (an enum member or its number); 500 for anything unknown."""
    if isinstance(code, int):
        if code not in _BY_NUMBER:
            return 500
        code = _BY_NUMBER[code]
    return HTTP_STATUS.get(code, 500)


#: Longest (UTF-8 bytes) text taken from a caller into an error: a field path, a description,
#: a metadata value, a resource name.
MAX_TEXT_BYTES = 200
#: Longest status message (it is sent twice: in grpc-message and inside the rich status).
MAX_MESSAGE_BYTES = 400
#: Most field violations one BadRequest carries; the message says how many were left out.
MAX_VIOLATIONS = 8
#: Marks where a text was cut.
TRUNCATED = "…"


def bounded(text: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """``text`` if its UTF-8 form fits in ``max_bytes``, else its longest prefix that does with
    :data:`TRUNCATED` appended (the result, marker included, fits). Lone surrogates (possible
    in text decoded from JSON) become ``?``, so the result is always valid UTF-8."""
    head = text[: max_bytes + 1]  # enough characters to decide: each is at least one byte
    raw = head.encode("utf-8", "replace")
    if len(raw) <= max_bytes and len(head) == len(text):
        return raw.decode("utf-8")
    room = max_bytes - len(TRUNCATED.encode())
    return raw[:room].decode("utf-8", "ignore") + TRUNCATED


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: proto field path (``parameters.width``) and why."""

    field: str
    description: str
    reason: str = "INVALID_VALUE"


class MediagenError(Exception):
    """Base of every error a caller may see. Subclasses set the code and the reason."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None) -> None:
        message = bounded(message, MAX_MESSAGE_BYTES)
        super().__init__(message)
        self.message = message
        self.metadata = {bounded(k): bounded(v) for k, v in (metadata or {}).items()}

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.grpc_code]

    def details(self) -> list[Message]:
        """Detail messages beyond ErrorInfo; subclasses add theirs."""
        return []

    def to_status(self) -> status_pb2.Status:
        """The ``google.rpc.Status`` sent to callers: code, message, ErrorInfo, then details."""
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=DOMAIN, metadata=self.metadata
        )
        packed = []
        for message in [info, *self.details()]:
            detail = any_pb2.Any()
            detail.Pack(message)
            packed.append(detail)
        return status_pb2.Status(code=self.grpc_code.value[0], message=self.message, details=packed)


class InvalidArgument(MediagenError):
    """The request is malformed; ``violations`` says which fields and why."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Sequence[FieldViolation], message: str | None = None) -> None:
        self.violations = [
            FieldViolation(bounded(v.field), bounded(v.description), bounded(v.reason))
            for v in violations[:MAX_VIOLATIONS]
        ]
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        if len(violations) > MAX_VIOLATIONS:  # said first: a long summary is cut at the end
            summary = f"{len(violations)} problems, the first {MAX_VIOLATIONS} listed: {summary}"
        super().__init__(message or f"invalid request: {summary}")

    def details(self) -> list[Message]:
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description, reason=v.reason
                    )
                    for v in self.violations
                ]
            )
        ]


class NotFound(MediagenError):
    """No resource of that kind has that id."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"
    resource_type = "resource"

    def __init__(self, resource_id: str) -> None:
        self.resource_id = bounded(resource_id)
        super().__init__(
            f"{self.resource_type} {self.resource_id!r} not found",
            metadata={"id": self.resource_id},
        )

    def details(self) -> list[Message]:
        return [
            error_details_pb2.ResourceInfo(
                resource_type=f"mediagen.v1.{self.resource_type.capitalize()}",
                resource_name=self.resource_id,
                description="no such id",
            )
        ]


class JobNotFound(NotFound):
    reason = "JOB_NOT_FOUND"
    resource_type = "job"


class MediaNotFound(NotFound):
    reason = "MEDIA_NOT_FOUND"
    resource_type = "media"


class FailedPrecondition(MediagenError):
    """The call is valid but the resource is in the wrong state for it."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"

    def details(self) -> list[Message]:
        return [
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=self.reason,
                        subject=self.metadata.get("id", ""),
                        description=self.message,
                    )
                ]
            )
        ]


class JobAlreadyFinished(FailedPrecondition):
    reason = "JOB_ALREADY_FINISHED"


class _Retryable(MediagenError):
    """An error the caller should retry after ``retry_after_s``."""

    def __init__(
        self, message: str, *, retry_after_s: float = 1.0, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, metadata=metadata)
        self.retry_after_s = retry_after_s

    def details(self) -> list[Message]:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(self.retry_after_s * 1000))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]


class ResourceExhausted(_Retryable):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(_Retryable):
    """A dependency (database, queue, provider) cannot be reached right now."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    reason = "BACKEND_UNAVAILABLE"


class Unauthenticated(MediagenError):
    """The caller did not prove who it is (over HTTP: 401 with ``WWW-Authenticate: Bearer``)."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class CredentialsMissing(Unauthenticated):
    reason = "CREDENTIALS_MISSING"


class InvalidApiKey(Unauthenticated):
    """Malformed, unknown, wrong or revoked; the message never repeats the key's secret."""

    reason = "API_KEY_INVALID"


class PermissionDenied(MediagenError):
    """The caller is known but may not do this."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class ReadOnlyRole(PermissionDenied):
    reason = "ROLE_READ_ONLY"


class TenantOverrideDenied(PermissionDenied):
    reason = "TENANT_OVERRIDE_DENIED"


def internal_status(message: str = "internal error") -> status_pb2.Status:
    """Status for an unexpected failure; the message never leaks internals."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN))
    return status_pb2.Status(code=code_pb2.INTERNAL, message=message, details=[info])
