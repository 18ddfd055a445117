"""HTTP headers to gRPC metadata and back, as grpc-gateway's default matchers do.

Incoming (``DefaultHeaderMatcher`` plus our two):

- ``Grpc-Metadata-<Key>: v`` becomes ``<key>: v``; a key ending in ``-bin`` is base64-decoded;
- ``Authorization`` and ``X-Request-Id`` become ``authorization`` and ``x-request-id``;
- the IANA permanent headers (``User-Agent``, ``Accept``, ...) become ``grpcgateway-<name>``
  (but ``Authorization`` only travels once, as ``authorization``: grpc-gateway sends it twice);
- ``x-forwarded-host`` and ``x-forwarded-for`` are set as grpc-gateway sets them;
- ``Grpc-Timeout`` (``100m``, ``5S``, ...) becomes the call's deadline;
- everything else is dropped, and so is any value that is not valid metadata.

Outgoing: the server's header metadata comes back as ``Grpc-Metadata-<key>`` response headers
(binary values base64-encoded). Trailers are not forwarded. No I/O here.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence

METADATA_PREFIX = "grpc-metadata-"
GATEWAY_PREFIX = "grpcgateway-"

#: Headers passed through unprefixed (lower case), beyond ``Grpc-Metadata-*``.
PASSTHROUGH = frozenset({"authorization", "x-request-id"})

#: IANA permanent message headers grpc-gateway forwards as ``grpcgateway-<name>``.
PERMANENT = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-language",
        "accept-ranges",
        "authorization",
        "cache-control",
        "content-type",
        "cookie",
        "date",
        "expect",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-schedule-tag-match",
        "if-unmodified-since",
        "max-forwards",
        "origin",
        "pragma",
        "referer",
        "user-agent",
        "via",
        "warning",
    }
)

# Keys gRPC reserves or that HTTP/2 transports itself; never sent as metadata.
_RESERVED = frozenset({"te", "content-type", "user-agent", "host", "connection", "grpc-timeout"})
_KEY = re.compile(r"^[0-9a-z_.\-]+$")
_ASCII_VALUE = re.compile(r"^[\x20-\x7e]*$")
_TIMEOUT = re.compile(r"^([0-9]{1,8})([HMSmun])$")
_TIMEOUT_UNIT_S = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}

Metadata = list[tuple[str, str | bytes]]


class BadHeader(ValueError):
    """A header the gateway must refuse (a malformed ``Grpc-Timeout``)."""


def _valid_key(key: str) -> bool:
    return bool(_KEY.match(key)) and not key.startswith("grpc-") and key not in _RESERVED


def _pair(key: str, value: str) -> tuple[str, str | bytes] | None:
    if not _valid_key(key):
        return None
    if key.endswith("-bin"):
        try:
            return key, base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        except binascii.Error:
            return None
    if not _ASCII_VALUE.match(value):
        return None
    return key, value


def incoming_metadata(
    headers: Iterable[tuple[str, str]], *, peer_host: str | None = None
) -> Metadata:
    """gRPC metadata for request headers given as ``(lower-case name, value)`` pairs."""
    metadata: Metadata = []
    forwarded_for: list[str] = []
    forwarded_host = ""
    host = ""
    for name, value in headers:
        if name.startswith(METADATA_PREFIX):
            pair = _pair(name[len(METADATA_PREFIX) :], value)
        elif name in PASSTHROUGH:
            pair = _pair(name, value)
        else:
            pair = None
        if pair is not None:
            metadata.append(pair)
        if name in PERMANENT and name not in PASSTHROUGH:
            prefixed = _pair(GATEWAY_PREFIX + name, value)
            if prefixed is not None:
                metadata.append(prefixed)
        if name == "x-forwarded-for":
            forwarded_for.append(value)
        elif name == "x-forwarded-host":
            forwarded_host = value
        elif name == "host":
            host = value
    for key, value in (
        ("x-forwarded-host", forwarded_host or host),
        ("x-forwarded-for", ", ".join([*forwarded_for, *([peer_host] if peer_host else [])])),
    ):
        pair = _pair(key, value) if value else None
        if pair is not None:
            metadata.append(pair)
    return metadata


def parse_timeout(value: str) -> float:
    """Seconds of a ``Grpc-Timeout`` header value (``1S``, ``250m``); raises :class:`BadHeader`."""
    match = _TIMEOUT.match(value.strip())
    if match is None:
        raise BadHeader(f"malformed Grpc-Timeout {value!r}")
    return int(match.group(1)) * _TIMEOUT_UNIT_S[match.group(2)]


def outgoing_headers(metadata: Sequence[tuple[str, str | bytes]] | None) -> list[tuple[str, str]]:
    """``Grpc-Metadata-<key>`` response headers for the server's header metadata."""
    headers: list[tuple[str, str]] = []
    for key, value in metadata or ():
        if isinstance(value, bytes):
            text = base64.b64encode(value).decode()
        elif _ASCII_VALUE.match(value):
            text = value
        else:
            continue
        headers.append((f"Grpc-Metadata-{key}", text))
    return headers
