"""Opaque, signed page tokens for ListJobs (AIP-158). Pure: no I/O.

A token carries the last (create_time, id) of a page, the filter it was made for and the tenant
scope of the listing, signed with the service's SECRET_KEY so callers cannot forge a position or
read the format as an API. A token is only good for the listing it came from: the same status
filter and the same caller's scope (one tenant's token cannot page through another's jobs).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime

from mediagen.errors import FieldViolation, InvalidArgument


@dataclass(frozen=True)
class Cursor:
    """Position after which the next page starts (jobs are ordered newest first)."""

    create_time: datetime
    job_id: str
    status_filter: str
    #: The tenant the listing was limited to; None for an admin's listing of every tenant.
    tenant_scope: str | None


def _sign(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()[:16]


def encode_token(cursor: Cursor, secret: str) -> str:
    body = json.dumps(
        [cursor.create_time.isoformat(), cursor.job_id, cursor.status_filter, cursor.tenant_scope],
        separators=(",", ":"),
    ).encode()
    return base64.urlsafe_b64encode(_sign(secret, body) + body).decode().rstrip("=")


def decode_token(
    token: str, secret: str, *, status_filter: str, tenant_scope: str | None
) -> Cursor:
    """Parse a token; INVALID_ARGUMENT if it is malformed, forged, or for another filter or
    another caller's scope."""
    bad = InvalidArgument([FieldViolation("page_token", "is not a valid page token")])
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raise bad from None
    signature, body = raw[:16], raw[16:]
    if len(signature) < 16 or not hmac.compare_digest(signature, _sign(secret, body)):
        raise bad
    try:
        created, job_id, token_filter, token_scope = json.loads(body)
        if token_scope is not None and not isinstance(token_scope, str):
            raise TypeError("tenant scope")
        cursor = Cursor(
            datetime.fromisoformat(created), str(job_id), str(token_filter), token_scope
        )
    except (ValueError, TypeError):
        raise bad from None
    if cursor.tenant_scope != tenant_scope:
        # Says nothing about whose listing it was.
        raise InvalidArgument([FieldViolation("page_token", "was issued to another caller")])
    if cursor.status_filter != status_filter:
        raise InvalidArgument(
            [FieldViolation("page_token", "was issued for a different status filter")]
        )
    return cursor
