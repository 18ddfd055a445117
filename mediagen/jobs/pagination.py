"""Opaque, signed page tokens for ListJobs (AIP-158). Pure: no I/O.

A token carries the last (create_time, id) of a page, the key of the filter it was made for
(:meth:`mediagen.jobs.listing.JobFilter.key`) and the tenant scope of the listing, signed with
the service's SECRET_KEY so callers cannot forge a position or read the format as an API. A token
is only good for the listing it came from: the same filter (state, model, creation times) and
the same caller's scope (one tenant's token cannot page through another's jobs).

A valid signature is not trusted blindly: whoever holds the key (or a leaked one) could sign
anything, so the contents are checked as strictly as any input (types, lengths, an aware
timestamp) before they reach a query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime

from mediagen.errors import FieldViolation, InvalidArgument

#: Real tokens are about 130 characters; anything much longer is not one of ours.
MAX_TOKEN_CHARS = 512
#: Job ids are UUIDs (36 characters); filter keys are 32 hex digits.
_MAX_ID_CHARS = 36
_MAX_FILTER_CHARS = 32


@dataclass(frozen=True)
class Cursor:
    """Position after which the next page starts (jobs are ordered newest first)."""

    create_time: datetime
    job_id: str
    #: The key of the filter the listing was made for.
    filter_key: str
    #: The tenant the listing was limited to; None for an admin's listing of every tenant.
    tenant_scope: str | None


def _sign(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()[:16]


def encode_token(cursor: Cursor, secret: str) -> str:
    body = json.dumps(
        [cursor.create_time.isoformat(), cursor.job_id, cursor.filter_key, cursor.tenant_scope],
        separators=(",", ":"),
    ).encode()
    return base64.urlsafe_b64encode(_sign(secret, body) + body).decode().rstrip("=")


def decode_token(token: str, secret: str, *, filter_key: str, tenant_scope: str | None) -> Cursor:
    """Parse a token; INVALID_ARGUMENT if it is malformed, forged, or for another filter or
    another caller's scope."""
    bad = InvalidArgument([FieldViolation("page_token", "is not a valid page token")])
    if len(token) > MAX_TOKEN_CHARS:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raise bad from None
    signature, body = raw[:16], raw[16:]
    if len(signature) < 16 or not hmac.compare_digest(signature, _sign(secret, body)):
        raise bad
    cursor = _parse_body(body)
    if cursor is None:
        raise bad
    if cursor.tenant_scope != tenant_scope:
        # Says nothing about whose listing it was.
        raise InvalidArgument([FieldViolation("page_token", "was issued to another caller")])
    if cursor.filter_key != filter_key:
        raise InvalidArgument(
            [
                FieldViolation(
                    "page_token",
                    "was issued for a different filter (status, model, created_after, "
                    "created_before)",
                )
            ]
        )
    return cursor


def _parse_body(body: bytes) -> Cursor | None:
    """The cursor a signed body holds, or None if it is not exactly what encode_token writes."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested absurdly deep
        return None
    if not (isinstance(value, list) and len(value) == 4):
        return None
    created, job_id, token_filter, scope = value
    if not all(isinstance(v, str) for v in (created, job_id, token_filter)):
        return None
    if scope is not None and not (isinstance(scope, str) and len(scope) <= _MAX_ID_CHARS * 4):
        return None
    texts = (job_id, token_filter, scope or "")
    if len(job_id) > _MAX_ID_CHARS or len(token_filter) > _MAX_FILTER_CHARS:
        return None
    if any("\x00" in text for text in texts):  # PostgreSQL refuses NUL in text
        return None
    try:
        create_time = datetime.fromisoformat(created)
    except ValueError:
        return None
    if create_time.utcoffset() is None:  # the store compares aware timestamps only
        return None
    return Cursor(create_time, job_id, token_filter, scope)
