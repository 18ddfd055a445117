"""Request ids: taken from the caller when they are safe to log and to pass on, else made here.
Pure.

A caller's id (gRPC ``x-request-id`` metadata, HTTP ``X-Request-Id``) is kept when it is at most
:data:`MAX_LENGTH` characters of :data:`_SAFE`: enough for UUIDs, ULIDs and the ids proxies and
load balancers add, and nothing that could forge a log line or a header (no spaces, quotes,
control characters). Anything else is replaced by a new id rather than refused: a request id
exists to find the call later, not to fail it.
"""

from __future__ import annotations

import re
import uuid

#: The gRPC metadata key and (case aside) the HTTP header.
HEADER = "x-request-id"
MAX_LENGTH = 128
_SAFE = re.compile(r"[A-Za-z0-9._:=+/-]+")


def is_valid(value: str) -> bool:
    return len(value) <= MAX_LENGTH and _SAFE.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept(value: str | None) -> str:
    """``value`` if it is a valid request id, else a new one."""
    if value is not None and is_valid(value):
        return value
    return new_request_id()
