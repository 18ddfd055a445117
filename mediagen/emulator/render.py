"""The bytes of output files: images drawn with Pillow, WAV tones with the stdlib.

``render_image`` and ``render_audio`` are CPU work: call them through ``asyncio.to_thread``.
``blob_chunks`` only slices one shared buffer, so it is cheap enough for the event loop.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import struct
import textwrap
import wave
from collections.abc import Iterator

from PIL import Image, ImageDraw, ImageFont, ImageOps

from mediagen.emulator.outputs import AudioFile, ImageFile

CHUNK_BYTES = 1024 * 1024
_BLOB_RATE = 8000  # 8-bit mono: any data length is a whole number of samples


def _palette(spec: ImageFile) -> bytes:
    return hashlib.sha256(f"{spec.prompt}\0{spec.seed}\0{spec.index}".encode()).digest()


def render_image(spec: ImageFile) -> bytes:
    """A gradient with a few shapes, coloured by a hash of the prompt, and the prompt on top."""
    key = _palette(spec)
    width, height = spec.width, spec.height
    gradient = Image.linear_gradient("L")
    if key[9] & 1:
        gradient = gradient.transpose(Image.Transpose.ROTATE_90)
    image = ImageOps.colorize(gradient.resize((width, height)), tuple(key[0:3]), tuple(key[3:6]))
    draw = ImageDraw.Draw(image)
    line = max(1, min(width, height) // 64)
    for shape in range(3):
        x0, y0, x1, y1 = (key[10 + shape * 4 + i] / 255 for i in range(4))
        box = (
            min(x0, x1) * width,
            min(y0, y1) * height,
            max(x0, x1) * width,
            max(y0, y1) * height,
        )
        colour = tuple(key[22 + shape * 3 : 25 + shape * 3])
        if shape % 2:
            draw.rectangle(box, outline=colour, width=line)
        else:
            draw.ellipse(box, outline=colour, width=line)
    _draw_prompt(draw, spec.prompt, width, height)
    buffer = io.BytesIO()
    if spec.image_format == "png":
        image.save(buffer, format="PNG", compress_level=1)  # fast; the size is not the point
    elif spec.image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="WEBP", quality=80, method=0)
    return buffer.getvalue()


def _draw_prompt(draw: ImageDraw.ImageDraw, prompt: str, width: int, height: int) -> None:
    size = max(8, min(width, height) // 16)
    font = ImageFont.load_default(size=size)
    per_line = max(1, int(width * 0.9 / (size * 0.55)))
    max_lines = max(1, int(height * 0.9 / (size * 1.25)))
    text = "\n".join(textwrap.wrap(prompt, per_line)[:max_lines])
    margin = (width // 20, height // 20)
    draw.multiline_text(
        margin, text, font=font, fill="white", stroke_width=max(1, size // 12), stroke_fill="black"
    )


def render_audio(spec: AudioFile, rate: int = 22050) -> bytes:
    """A 16-bit mono sine tone, 220-880 Hz depending on the prompt."""
    key = hashlib.sha256(f"{spec.prompt}\0{spec.seed}".encode()).digest()
    pitch = 220 + int.from_bytes(key[:2], "big") % 661
    count = int(spec.duration_s * rate)
    step = 2 * math.pi * pitch / rate
    samples = struct.pack(f"<{count}h", *(int(12000 * math.sin(i * step)) for i in range(count)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples)
    return buffer.getvalue()


def _wav_header(size_bytes: int) -> bytes:
    data = size_bytes - 44
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        size_bytes - 8,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        1,  # mono
        _BLOB_RATE,
        _BLOB_RATE,  # bytes per second
        1,  # block align
        8,  # bits per sample (unsigned)
        b"data",
        data,
    )


@functools.cache
def _tone_chunk() -> bytes:
    # 500 Hz at 8 kHz: 16 samples per period, so a 1 MiB chunk holds whole periods.
    period = bytes(128 + int(100 * math.sin(2 * math.pi * i / 16)) for i in range(16))
    return period * (CHUNK_BYTES // len(period))


def blob_chunks(size_bytes: int) -> Iterator[bytes]:
    """A valid WAV file of exactly ``size_bytes``, as a header then chunks of at most 1 MiB."""
    header = _wav_header(size_bytes)
    yield header
    remaining = size_bytes - len(header)
    tone = _tone_chunk()
    while remaining >= len(tone):
        yield tone  # the same object each time: nothing new is allocated
        remaining -= len(tone)
    if remaining:
        yield tone[:remaining]
