"""What an output is: its format sniffed from its first bytes, its size, hash and dimensions."""

from mediagen.media.formats import MediaFormat, MediaKind
from mediagen.media.inspect import (
    InspectedStream,
    MediaError,
    MediaInfo,
    OutputTooLarge,
    inspect_stream,
)

__all__ = [
    "InspectedStream",
    "MediaError",
    "MediaFormat",
    "MediaInfo",
    "MediaKind",
    "OutputTooLarge",
    "inspect_stream",
]
