"""Which files a prediction produces, decided at create time. Pure: the bytes come later.

Files are described, not rendered, so a prediction nobody downloads costs nothing; the file
route renders (images, short audio) or streams (``emulator_output_bytes``) on each request.
"""

from __future__ import annotations

from dataclasses import dataclass

from mediagen.emulator.inputs import IMAGE_FORMATS, Params

WAV_TYPE = "audio/wav"


@dataclass(frozen=True)
class ImageFile:
    """A picture drawn from the prompt: same prompt, seed and index, same pixels."""

    name: str
    prompt: str
    seed: int
    index: int
    width: int
    height: int
    image_format: str  # Pillow's name: png, jpeg or webp

    @property
    def content_type(self) -> str:
        return f"image/{self.image_format}"


@dataclass(frozen=True)
class AudioFile:
    """A short tone whose pitch comes from the prompt."""

    name: str
    prompt: str
    seed: int
    duration_s: float
    content_type: str = WAV_TYPE


@dataclass(frozen=True)
class BlobFile:
    """A WAV file of exactly ``size_bytes``, generated while it streams (never held whole)."""

    name: str
    size_bytes: int
    content_type: str = WAV_TYPE


OutputFile = ImageFile | AudioFile | BlobFile


@dataclass(frozen=True)
class OutputPlan:
    files: tuple[OutputFile, ...]
    as_list: bool  # output is a JSON list of URLs (image models) or one URL string


def plan_outputs(model: str, params: Params) -> OutputPlan:
    if params.output_bytes is not None:
        return OutputPlan((BlobFile("output.wav", params.output_bytes),), as_list=False)
    if "audio" in model.rsplit("/", 1)[-1]:
        audio = AudioFile("output.wav", params.prompt, params.seed, params.duration_s)
        return OutputPlan((audio,), as_list=False)
    image_format = IMAGE_FORMATS[params.output_format]
    images = tuple(
        ImageFile(
            name=f"out-{index}.{params.output_format}",
            prompt=params.prompt,
            seed=params.seed,
            index=index,
            width=params.width,
            height=params.height,
            image_format=image_format,
        )
        for index in range(params.num_outputs)
    )
    return OutputPlan(images, as_list=True)
