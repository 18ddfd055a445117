"""Signed, expiring URLs for locally stored media, as S3 presigned URLs are. Pure: no I/O.

A URL ``/files/<key>?expires=<unix s>&signature=<hex>`` is good for exactly that key until
``expires``: the signature is HMAC-SHA256 under SECRET_KEY of the key and the expiry. So a leaked
job id or storage key is not a download, and a URL handed out stops working after its lifetime.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Sequence

#: Query parameter names.
EXPIRES = "expires"
SIGNATURE = "signature"

#: Prefixed to what is signed, so no other HMAC made with SECRET_KEY (page tokens) can ever pass
#: as a media URL signature.
_PURPOSE = b"mediagen media url v1\n"
#: An expiry is a plain Unix time in seconds; anything else is refused unparsed.
_EXPIRES_FORMAT = re.compile(r"[0-9]{1,12}")


class UrlRefused(Exception):
    """The URL's signature is missing, altered or expired (the gateway answers 403)."""


def signature(secret: str, key: str, expires: int) -> str:
    """Hex HMAC-SHA256 of ``key`` and ``expires``. The expiry is all digits and comes last, so
    no other (key, expiry) pair signs the same bytes."""
    message = _PURPOSE + key.encode() + b"\n" + str(expires).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, key: str, *, now: float, ttl_s: int) -> dict[str, str]:
    """The query parameters that make ``key`` downloadable for ``ttl_s`` seconds from ``now``
    (rounded up to the whole second, so never less)."""
    expires = math.ceil(now) + ttl_s
    return {EXPIRES: str(expires), SIGNATURE: signature(secret, key, expires)}


def verify(secret: str, key: str, params: Sequence[tuple[str, str]], *, now: float) -> None:
    """Check a request's query parameters for ``key``; raises :class:`UrlRefused`."""
    expires = _single(params, EXPIRES)
    given = _single(params, SIGNATURE)
    if expires is None or given is None or not _EXPIRES_FORMAT.fullmatch(expires):
        raise UrlRefused("the URL is not signed: request a fresh one from the API")
    expected = signature(secret, key, int(expires))
    # Constant time: how much of a guess matched must not show in the response time.
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise UrlRefused("the URL's signature does not match")
    if now > int(expires):
        raise UrlRefused("the URL has expired: request a fresh one from the API")


def _single(params: Sequence[tuple[str, str]], name: str) -> str | None:
    """The one value of ``name``; None if absent or repeated (two values are ambiguous)."""
    values = [value for key, value in params if key == name]
    return values[0] if len(values) == 1 else None
