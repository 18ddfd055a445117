"""Inspect an output while it streams to storage, without ever holding it whole.

Two steps, because the format must be known before the upload starts (it picks the key's
extension and the Content-Type)::

    stream = await inspect_stream(download, max_bytes=settings.max_output_bytes)
    key = f"{job_id}/{index}.{stream.format.extension}"
    await storage.put_stream(key, stream, content_type=stream.format.mime_type)
    info = stream.result()  # sha256, size, dimensions

:func:`inspect_stream` reads only the first few chunks to sniff the format; iterating the
returned stream passes every chunk through unchanged while it hashes, counts, reads image
dimensions from the header, and stops with :class:`OutputTooLarge` past the limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from mediagen.media.formats import (
    NEED_MORE,
    SNIFF_BYTES,
    MediaFormat,
    MediaKind,
    image_size,
    sniff,
)

#: How far into an image we look for its dimensions; JPEG headers (EXIF, ICC profiles) can be
#: long, but past this the size is reported as unknown rather than buffering more.
DIMENSION_SCAN_BYTES = 1024 * 1024


class MediaError(Exception):
    """The output itself is unacceptable; retrying cannot help (a permanent failure)."""

    transient = False


class OutputTooLarge(MediaError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"output too large: over the limit of {max_bytes} bytes")
        self.max_bytes = max_bytes


@dataclass(frozen=True)
class MediaInfo:
    """What was learned about an output once all of it has streamed through."""

    sha256: str  # hex digest
    size_bytes: int
    mime_type: str
    kind: MediaKind | None  # None: bytes of no format we know
    extension: str  # for the storage key, without the dot
    width: int | None  # images only, when the header gives it
    height: int | None


class InspectedStream:
    """An output whose format is known; iterate it once to pass its chunks on."""

    def __init__(
        self,
        format: MediaFormat,
        head: list[bytes],
        rest: AsyncIterator[bytes],
        max_bytes: int,
    ) -> None:
        self.format = format
        self._head = head
        self._rest = rest
        self._max_bytes = max_bytes
        self._sha256 = hashlib.sha256()
        self._size = 0
        self._scan: bytearray | None = bytearray() if format.kind is MediaKind.IMAGE else None
        self._dimensions: tuple[int, int] | None = None
        self._started = False
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._started:
            raise RuntimeError("an inspected stream can be read only once")
        self._started = True
        head, self._head = self._head, []
        for chunk in head:
            yield self._take(chunk)
        async for chunk in self._rest:
            _check_size(self._size + len(chunk), self._max_bytes)
            yield self._take(chunk)
        self._done = True

    def result(self) -> MediaInfo:
        """The findings; only once the stream has been read to its end."""
        if not self._done:
            raise RuntimeError("the stream has not been read to its end")
        width, height = self._dimensions or (None, None)
        return MediaInfo(
            sha256=self._sha256.hexdigest(),
            size_bytes=self._size,
            mime_type=self.format.mime_type,
            kind=self.format.kind,
            extension=self.format.extension,
            width=width,
            height=height,
        )

    def _take(self, chunk: bytes) -> bytes:
        self._sha256.update(chunk)
        self._size += len(chunk)
        if self._scan is not None:
            self._scan_dimensions(self._scan, chunk)
        return chunk

    def _scan_dimensions(self, scan: bytearray, chunk: bytes) -> None:
        scan += chunk[: DIMENSION_SCAN_BYTES - len(scan)]
        found = image_size(self.format, bytes(scan))
        if found is NEED_MORE and len(scan) < DIMENSION_SCAN_BYTES:
            return
        self._dimensions = None if found is NEED_MORE else found
        self._scan = None  # settled either way: stop buffering


async def inspect_stream(chunks: AsyncIterable[bytes], *, max_bytes: int) -> InspectedStream:
    """Read just enough of ``chunks`` to sniff the format, and wrap the whole stream.

    Raises :class:`OutputTooLarge` if the first chunks already pass ``max_bytes``.
    """
    rest = aiter(chunks)
    head: list[bytes] = []
    size = 0
    async for chunk in rest:
        size += len(chunk)
        _check_size(size, max_bytes)
        head.append(chunk)
        if size >= SNIFF_BYTES:
            break
    fmt = sniff(b"".join(head)[:SNIFF_BYTES])
    return InspectedStream(fmt, head, rest, max_bytes)


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise OutputTooLarge(max_bytes)
