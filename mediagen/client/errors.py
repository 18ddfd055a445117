"""Client exceptions, with the rich details of a gRPC status decoded (see the package docs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import grpc
from google.protobuf import message as protobuf_message
from google.rpc import error_details_pb2, status_pb2

from mediagen.errors import FieldViolation

# Trailer in which gRPC servers send the serialized google.rpc.Status with rich details.
_STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"


class MediagenClientError(Exception):
    """Base of every exception this module raises."""


class StatusError(MediagenClientError):
    """The server answered with a non-OK status; the rich details are decoded.

    Attributes:
        code: the gRPC status code.
        message: the server's message (safe to show to a person).
        reason: ``google.rpc.ErrorInfo.reason`` (for example ``JOB_NOT_FOUND``), or ``""``.
        domain: ``ErrorInfo.domain`` (``mediagen.dev`` for this service's own errors), or ``""``.
        error_metadata: ``ErrorInfo.metadata``.
        field_violations: from ``google.rpc.BadRequest``, which request fields were wrong.
        retry_after_s: from ``google.rpc.RetryInfo``, how long the server asks callers to wait.
        status: the whole decoded ``google.rpc.Status``, for details not lifted out above.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        error_metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
        retry_after_s: float | None = None,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.error_metadata = dict(error_metadata or {})
        self.field_violations = tuple(field_violations)
        self.retry_after_s = retry_after_s
        self.status = status


class InvalidArgumentError(StatusError):
    """The request was malformed; ``field_violations`` says which fields and why."""


class NotFoundError(StatusError):
    """No job or media has that id."""


class FailedPreconditionError(StatusError):
    """The call was valid but the resource's state refuses it (reason ``JOB_ALREADY_FINISHED``)."""


class ResourceExhaustedError(StatusError):
    """The server is rate limiting; wait ``retry_after_s`` before trying again."""


class UnavailableError(StatusError):
    """The server stayed unreachable (or kept asking for a retry) past the retry policy."""


class DeadlineExceededError(StatusError):
    """The call took longer than ``timeout_s``."""


_STATUS_ERRORS: Final[Mapping[grpc.StatusCode, type[StatusError]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


class DownloadError(MediagenClientError):
    """A media file could not be downloaded (HTTP error, network error, unusable URL)."""


class IntegrityError(DownloadError):
    """The downloaded bytes differ from what the Media promises; nothing is left on disk."""


class ParameterError(MediagenClientError, ValueError):
    """A generation parameter could not be turned into ``GenerationParameters``; names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


def _rich_status(exc: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The ``google.rpc.Status`` from the error's trailers, when the server sent one."""
    for key, value in exc.trailing_metadata() or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except protobuf_message.DecodeError:
            return None
        # A status whose code disagrees with the call's is not about this call (grpc_status
        # refuses such a pair too).
        return status if status.code == exc.code().value[0] else None
    return None


def _status_error(exc: grpc.aio.AioRpcError) -> StatusError:
    """Translate a gRPC error into a :class:`StatusError`; the one place this happens."""
    code = exc.code()
    status = _rich_status(exc)
    info = error_details_pb2.ErrorInfo()
    retry_info = error_details_pb2.RetryInfo()
    bad_request = error_details_pb2.BadRequest()
    violations: list[FieldViolation] = []
    retry_after_s: float | None = None
    # Unpack() returns False, leaving the message alone, for a detail of another type. Details
    # this client does not lift out (ResourceInfo, PreconditionFailure) stay in .status.
    for detail in status.details if status is not None else ():
        if detail.Unpack(bad_request):
            violations.extend(
                FieldViolation(v.field, v.description, v.reason or "INVALID_VALUE")
                for v in bad_request.field_violations
            )
        elif detail.Unpack(retry_info):
            retry_after_s = retry_info.retry_delay.ToTimedelta().total_seconds()
        else:
            detail.Unpack(info)
    error_class = _STATUS_ERRORS.get(code, StatusError)
    return error_class(
        code,
        exc.details() or (status.message if status is not None else "") or code.name,
        reason=info.reason,
        domain=info.domain,
        error_metadata=info.metadata,
        field_violations=violations,
        retry_after_s=retry_after_s,
        status=status,
    )
