"""``data:`` outputs decoded a slice at a time, never whole, within a size limit. Pure."""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from urllib.parse import unquote_to_bytes

from mediagen.media.inspect import OutputTooLarge

#: Characters of the URI decoded per chunk (a multiple of 4, for base64).
SLICE_CHARS = 256 * 1024
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]")


class MalformedDataUri(ValueError):
    """Not a ``data:[<type>][;base64],<data>`` URI, or bad base64 in one."""


def data_uri_chunks(uri: str, *, max_bytes: int) -> Iterator[bytes]:
    """The bytes of a ``data:`` URI in chunks; :class:`OutputTooLarge` past ``max_bytes``."""
    head, sep, data = uri.partition(",")
    if not sep or not head.startswith("data:"):
        raise MalformedDataUri("malformed data: URI")
    pieces = _base64(data) if head.endswith(";base64") else _percent(data)
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > max_bytes:
            raise OutputTooLarge(max_bytes)
        if piece:
            yield piece


def _base64(data: str) -> Iterator[bytes]:
    # Like b64decode(validate=False): characters outside the alphabet are skipped.
    carry = ""
    for start in range(0, len(data), SLICE_CHARS):
        text = carry + _NOT_BASE64.sub("", data[start : start + SLICE_CHARS])
        whole = len(text) - len(text) % 4
        carry = text[whole:]
        yield _decode(text[:whole])
    if carry:
        yield _decode(carry + "=" * (-len(carry) % 4))


def _decode(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text)
    except binascii.Error as exc:
        raise MalformedDataUri("malformed base64 in data: URI") from exc


def _percent(data: str) -> Iterator[bytes]:
    start = 0
    while start < len(data):
        end = min(start + SLICE_CHARS, len(data))
        # Never split a %XX escape between two slices.
        cut = data.rfind("%", max(start, end - 2), end)
        if cut != -1 and end < len(data):
            end = cut
        yield unquote_to_bytes(data[start:end])
        start = end
