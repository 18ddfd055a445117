"""Bounding and redacting text that came from upstream before it is stored or logged. Pure.

Provider error strings, HTTP problem bodies and exception messages are written by someone else:
they may echo our token back (``Authorization: Bearer r8_...``), carry signed URLs, or be
megabytes long. :func:`clean_upstream` is what every such text passes through on its way into
``job.error.message`` or a log line.
"""

from __future__ import annotations

import logging
import re

#: Upstream text kept (after redaction); the rest is cut and the cut is marked.
MAX_UPSTREAM_CHARS = 2048
#: Redaction runs on at most this much of a huge text (the rest would be cut anyway).
_SCAN_CHARS = 64 * 1024
REDACTED = "[REDACTED]"

#: Query parameters that carry a signature or a credential (S3, GCS, Azure SAS, generic).
_SECRET_PARAMS = (
    r"x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential"
    r"|signature|sig|token|access_token|id_token|auth|api_key|apikey|key|password|secret"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Replicate API tokens: r8_ and ~37 characters.
    (re.compile(r"r8_[A-Za-z0-9_-]+"), f"r8_{REDACTED}"),
    # An Authorization header (or a JSON/dict key of that name) and its whole value.
    (
        re.compile(r"""(?i)(\bauthorization\b["']?\s*[:=]\s*["']?)[^\r\n"',}]+"""),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;}]+"), rf"\1 {REDACTED}"),
    (re.compile(rf"(?i)([?&;](?:{_SECRET_PARAMS})=)[^&#\s\"'<>]*"), rf"\1{REDACTED}"),
    # Credentials in a URL: scheme://user:password@host
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s@\"']+@"), rf"\1{REDACTED}@"),
)


def redact(text: str) -> str:
    """``text`` with tokens, Authorization values, signed query parameters and URL credentials
    replaced by ``[REDACTED]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def bound(text: str, max_chars: int = MAX_UPSTREAM_CHARS) -> str:
    """At most ``max_chars`` of ``text`` plus a marker saying how long it was."""
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}… [truncated: {len(text)} characters in all]"


def clean_upstream(text: str, max_chars: int = MAX_UPSTREAM_CHARS) -> str:
    """Redacted, then bounded: safe to store in ``job.error`` and to log."""
    scanned = redact(text[:_SCAN_CHARS])
    if len(text) > _SCAN_CHARS:
        # Keep the true length in the marker while redacting only what can survive the cut.
        return f"{scanned[:max_chars]}… [truncated: {len(text)} characters in all]"
    return bound(scanned, max_chars)


class RedactingFilter(logging.Filter):
    """A handler filter that redacts every record's final message (third-party loggers such as
    httpx's, which log request URLs at INFO, included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
