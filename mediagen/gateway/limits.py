"""Per-request limits the gateway checks itself, before a request costs anything.

uvicorn (h11) bounds only what it buffers while a request's head is incomplete, so a head that
arrives whole can be any size; :func:`check_head` bounds it exactly. A request with a body must
say it is JSON (:func:`check_json`): a browser sends ``text/plain`` and form encodings
cross-site without asking (a CORS "simple request"), ``application/json`` never, so this alone
stops cross-site form POSTs. A declared ``Content-Length`` over the limit is refused before
any of the body is read. :func:`check_metadata` keeps what the gateway forwards within what a
gRPC server accepts, so a caller's large headers are 431 here rather than RESOURCE_EXHAUSTED
(429) from the server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
from starlette.types import Scope

from mediagen.gateway.errors import GatewayError

#: Forwarded metadata at most this large, as gRPC counts it (key + value + 32 per entry); the
#: API server accepts 32 KiB (``mediagen.api.server.MAX_METADATA_BYTES``), and gRPC adds its
#: own headers.
MAX_FORWARDED_METADATA_BYTES = 24 * 1024
#: Media types a request body may be sent as.
JSON_TYPES = frozenset({"application/json"})


def head_too_large(limit: int) -> GatewayError:
    return GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"request line and headers exceed {limit} bytes",
        http_status=431,
    )


def check_head(scope: Scope, limit: int) -> None:
    """431 if the request line and headers exceed ``limit`` bytes."""
    size = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4  # ": " and CRLF
        if size > limit:
            raise head_too_large(limit)
    if size > limit:
        raise head_too_large(limit)


def check_json(headers: Mapping[str, str], *, has_body: bool) -> None:
    """415 unless a request body is declared ``application/json`` (parameters allowed). A
    request with no body and no Content-Type (``curl -X POST``) passes."""
    given = headers.get("content-type")
    if given is None and not has_body:
        return
    media_type = (given or "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_TYPES:
        shown = repr(given[:60]) if given is not None else "none"
        raise GatewayError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"request bodies must be sent as Content-Type: application/json (got {shown})",
            http_status=415,
        )


def declared_length(headers: Mapping[str, str]) -> int | None:
    """The Content-Length a request declares, or None (absent, chunked, or not a number;
    h11 has already refused a malformed one)."""
    raw = headers.get("content-length", "").strip()
    return int(raw) if raw.isdigit() else None


def body_too_large(limit: int) -> GatewayError:
    return GatewayError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, f"request body exceeds {limit} bytes", http_status=413
    )


def check_metadata(metadata: Sequence[tuple[str, str | bytes]]) -> None:
    """431 if the metadata to forward is more than a gRPC server takes."""
    size = sum(len(key) + len(value) + 32 for key, value in metadata)
    if size > MAX_FORWARDED_METADATA_BYTES:
        raise GatewayError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"headers forwarded to the service exceed {MAX_FORWARDED_METADATA_BYTES} bytes",
            http_status=431,
        )
