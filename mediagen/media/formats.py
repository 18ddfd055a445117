"""Media formats told apart by their magic bytes, and image dimensions read from headers.

Pure functions over the first bytes of a file: nothing here does I/O or needs the whole file.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal


class MediaKind(enum.StrEnum):
    """What a client does with an output."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"


@dataclass(frozen=True)
class MediaFormat:
    """A format as stored: its MIME type, its kind, and the extension used in storage keys."""

    mime_type: str
    kind: MediaKind | None
    extension: str


PNG = MediaFormat("image/png", MediaKind.IMAGE, "png")
JPEG = MediaFormat("image/jpeg", MediaKind.IMAGE, "jpg")
WEBP = MediaFormat("image/webp", MediaKind.IMAGE, "webp")
GIF = MediaFormat("image/gif", MediaKind.IMAGE, "gif")
MP4 = MediaFormat("video/mp4", MediaKind.VIDEO, "mp4")
QUICKTIME = MediaFormat("video/quicktime", MediaKind.VIDEO, "mov")
WEBM = MediaFormat("video/webm", MediaKind.VIDEO, "webm")
MATROSKA = MediaFormat("video/x-matroska", MediaKind.VIDEO, "mkv")
M4A = MediaFormat("audio/mp4", MediaKind.AUDIO, "m4a")
WAV = MediaFormat("audio/wav", MediaKind.AUDIO, "wav")
MP3 = MediaFormat("audio/mpeg", MediaKind.AUDIO, "mp3")
OGG = MediaFormat("audio/ogg", MediaKind.AUDIO, "ogg")
#: Bytes we cannot name; stored as they are, the caller decides whether that is acceptable.
UNKNOWN = MediaFormat("application/octet-stream", None, "bin")

#: Enough leading bytes to tell every format here apart (WebM's DocType sits within ~40).
SNIFF_BYTES: Final = 64

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_AUDIO_MP4_BRANDS = frozenset({b"M4A ", b"M4B "})


def sniff(head: bytes) -> MediaFormat:
    """The format of a file starting with ``head`` (give at least :data:`SNIFF_BYTES`)."""
    if head.startswith(_PNG_SIGNATURE):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return WAV
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AUDIO_MP4_BRANDS:
            return M4A
        return QUICKTIME if brand == b"qt  " else MP4
    if head.startswith(_EBML_MAGIC):
        return WEBM if b"webm" in head[:SNIFF_BYTES] else MATROSKA
    if head.startswith(b"OggS"):
        return OGG
    if head.startswith(b"ID3") or _is_mpeg_audio_frame(head):
        return MP3
    return UNKNOWN


def _is_mpeg_audio_frame(head: bytes) -> bool:
    # An 11-bit frame sync, then layer bits 01 (Layer III); ADTS AAC has layer 00.
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 == 0x02


class _Scan(enum.Enum):
    NEED_MORE = "need more"


#: :func:`image_size` found no size yet but may with more bytes.
NEED_MORE: Final = _Scan.NEED_MORE

Size = tuple[int, int]
#: What a header scan gives: a size, no size, or "read further".
Scan = Size | None | Literal[_Scan.NEED_MORE]


def image_size(fmt: MediaFormat, head: bytes) -> Scan:
    """``(width, height)`` from the header in ``head``; None when the format has no size we
    read (or the header is malformed); :data:`NEED_MORE` when ``head`` stops too early."""
    if fmt is PNG:
        return _fixed(head, 24, _png_size)
    if fmt is GIF:
        return _fixed(head, 10, _gif_size)
    if fmt is WEBP:
        return _fixed(head, 30, _webp_size)
    if fmt is JPEG:
        return _jpeg_size(head)
    return None


def _fixed(head: bytes, needed: int, read: Callable[[bytes], Size | None]) -> Scan:
    return NEED_MORE if len(head) < needed else read(head)


def _png_size(head: bytes) -> Size | None:
    if head[12:16] != b"IHDR":
        return None
    return _be(head, 16, 4), _be(head, 20, 4)


def _gif_size(head: bytes) -> Size | None:
    return _le(head, 6, 2), _le(head, 8, 2)


def _webp_size(head: bytes) -> Size | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":  # lossy: key frame start code
        return _le(head, 26, 2) & 0x3FFF, _le(head, 28, 2) & 0x3FFF
    if chunk == b"VP8L" and head[20] == 0x2F:  # lossless: 14-bit width-1 and height-1
        bits = _le(head, 21, 4)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
        return _le(head, 24, 3) + 1, _le(head, 27, 3) + 1
    return None


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers with no length field.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def _jpeg_size(head: bytes) -> Scan:
    """Walk the marker segments (EXIF, ICC, tables) to the first start-of-frame."""
    i = 2
    while True:
        if i + 4 > len(head):
            return NEED_MORE
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
        elif marker in _JPEG_STANDALONE:
            i += 2
        elif marker in _JPEG_SOF:
            if i + 9 > len(head):
                return NEED_MORE
            return _be(head, i + 7, 2), _be(head, i + 5, 2)
        elif marker in (0xD9, 0xDA):  # end of image or scan data before any frame header
            return None
        else:
            i += 2 + _be(head, i + 2, 2)


def _be(data: bytes, offset: int, length: int) -> int:
    return int.from_bytes(data[offset : offset + length], "big")


def _le(data: bytes, offset: int, length: int) -> int:
    return int.from_bytes(data[offset : offset + length], "little")
