"""The streaming inspector, on real files made with Pillow and the wave module."""

from __future__ import annotations

import hashlib
import io
import os
import wave
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image

from mediagen.media import MediaKind, OutputTooLarge, inspect_stream
from mediagen.media.formats import UNKNOWN, sniff


def image_bytes(fmt: str, size: tuple[int, int], mode: str = "RGB", **options: Any) -> bytes:
    # Noise, so encoders cannot shrink the file to a few bytes.
    image = Image.frombytes(mode, size, os.urandom(size[0] * size[1] * len(mode)))
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def wav_bytes(frames: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(os.urandom(frames * 2))
    return out.getvalue()


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def aiter_list(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def pass_through(chunks: list[bytes], max_bytes: int = 10**9) -> tuple[list[bytes], Any]:
    stream = await inspect_stream(aiter_list(chunks), max_bytes=max_bytes)
    out = [chunk async for chunk in stream]
    return out, stream.result()


@pytest.mark.parametrize(
    ("data", "mime", "ext", "size"),
    [
        (image_bytes("PNG", (37, 23)), "image/png", "png", (37, 23)),
        (image_bytes("JPEG", (640, 480)), "image/jpeg", "jpg", (640, 480)),
        (image_bytes("WEBP", (301, 77)), "image/webp", "webp", (301, 77)),  # lossy: VP8
        (image_bytes("WEBP", (64, 9), lossless=True), "image/webp", "webp", (64, 9)),  # VP8L
        (image_bytes("WEBP", (50, 40), "RGBA"), "image/webp", "webp", (50, 40)),  # VP8X
        (image_bytes("GIF", (20, 10)), "image/gif", "gif", (20, 10)),
    ],
    ids=["png", "jpeg", "webp-lossy", "webp-lossless", "webp-alpha", "gif"],
)
async def test_images(data: bytes, mime: str, ext: str, size: tuple[int, int]) -> None:
    chunks = split(data, 1000)

    out, info = await pass_through(chunks)

    assert out == chunks  # passed on unchanged, chunk for chunk
    assert (info.mime_type, info.kind, info.extension) == (mime, MediaKind.IMAGE, ext)
    assert (info.width, info.height) == size
    assert info.size_bytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()


async def test_jpeg_size_found_past_a_long_header() -> None:
    # A 200 kB ICC profile puts the frame header (the last FF C0: scan data escapes FF) well
    # past the first chunks; its random bytes may hold FF C0 too, which must be skipped.
    data = image_bytes("JPEG", (123, 45), icc_profile=os.urandom(200_000))
    assert data.rindex(b"\xff\xc0") > 200_000

    _, info = await pass_through(split(data, 4096))

    assert (info.width, info.height) == (123, 45)


async def test_format_is_sniffed_across_tiny_chunks() -> None:
    data = image_bytes("PNG", (5, 6))

    stream = await inspect_stream(aiter_list(split(data, 1)), max_bytes=10**6)

    assert stream.format.mime_type == "image/png"  # known before the upload starts
    assert b"".join([chunk async for chunk in stream]) == data
    assert (stream.result().width, stream.result().height) == (5, 6)


async def test_wav_is_audio_without_dimensions() -> None:
    data = wav_bytes()

    _, info = await pass_through(split(data, 4096))

    assert (info.mime_type, info.kind, info.extension) == ("audio/wav", MediaKind.AUDIO, "wav")
    assert (info.width, info.height) == (None, None)
    assert info.size_bytes == len(data)


# Leading bytes as ffmpeg and common encoders write them.
WEBM_HEAD = bytes.fromhex("1a45dfa39f4286810142f7810142f2810442f381084282847765626d42878104")
MKV_HEAD = bytes.fromhex("1a45dfa3a34286810142f7810142f2810442f38108428288") + b"matroska"


@pytest.mark.parametrize(
    ("head", "mime", "kind", "ext"),
    [
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "video/mp4", MediaKind.VIDEO, "mp4"),
        (b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00", "audio/mp4", MediaKind.AUDIO, "m4a"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video/quicktime", MediaKind.VIDEO, "mov"),
        (WEBM_HEAD, "video/webm", MediaKind.VIDEO, "webm"),
        (MKV_HEAD, "video/x-matroska", MediaKind.VIDEO, "mkv"),
        (b"ID3\x04\x00\x00\x00\x00\x00#TSSE", "audio/mpeg", MediaKind.AUDIO, "mp3"),
        (b"\xff\xfb\x90\x64\x00", "audio/mpeg", MediaKind.AUDIO, "mp3"),  # bare MPEG-1 Layer III
        (b"OggS\x00\x02\x00\x00", "audio/ogg", MediaKind.AUDIO, "ogg"),
    ],
    ids=["mp4", "m4a", "mov", "webm", "mkv", "mp3-id3", "mp3-frame", "ogg"],
)
def test_video_and_audio_signatures(head: bytes, mime: str, kind: MediaKind, ext: str) -> None:
    fmt = sniff(head)

    assert (fmt.mime_type, fmt.kind, fmt.extension) == (mime, kind, ext)


@pytest.mark.parametrize(
    "head",
    [b"", b"hello world", b"\xff\xf1\x50\x80", b"<svg xmlns='http://www.w3.org/2000/svg'/>"],
    ids=["empty", "text", "adts-aac", "svg"],
)
def test_unknown_bytes_are_octet_stream(head: bytes) -> None:
    assert sniff(head) == UNKNOWN
    assert UNKNOWN.kind is None
    assert UNKNOWN.mime_type == "application/octet-stream"


async def test_output_over_the_limit_stops_before_the_excess_is_passed_on() -> None:
    data = image_bytes("PNG", (64, 64))
    limit = len(data) - 1
    out: list[bytes] = []

    stream = await inspect_stream(aiter_list(split(data, 1000)), max_bytes=limit)
    with pytest.raises(OutputTooLarge, match="output too large") as caught:
        async for chunk in stream:
            out.append(chunk)

    assert sum(map(len, out)) <= limit
    assert caught.value.transient is False
    assert caught.value.max_bytes == limit


async def test_output_at_the_limit_is_accepted() -> None:
    data = image_bytes("PNG", (64, 64))

    _, info = await pass_through(split(data, 1000), max_bytes=len(data))

    assert info.size_bytes == len(data)


async def test_first_chunk_over_the_limit_fails_at_once() -> None:
    with pytest.raises(OutputTooLarge):
        await inspect_stream(aiter_list([b"x" * 101]), max_bytes=100)


async def test_empty_output() -> None:
    out, info = await pass_through([])

    assert out == []
    assert info.size_bytes == 0
    assert info.mime_type == "application/octet-stream"
    assert info.sha256 == hashlib.sha256(b"").hexdigest()


async def test_result_needs_the_whole_stream_and_the_stream_reads_once() -> None:
    stream = await inspect_stream(aiter_list([b"abc"]), max_bytes=100)
    with pytest.raises(RuntimeError):
        stream.result()

    assert [chunk async for chunk in stream] == [b"abc"]
    with pytest.raises(RuntimeError):
        [chunk async for chunk in stream]
