"""What a create request asks for: which model, and the inputs the emulated model reads.

Bad references and inputs raise :class:`Problem` 422, in Replicate's shapes. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from mediagen.emulator.problems import Problem

_T = TypeVar("_T")

_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_MODEL = re.compile(rf"({_NAME}/{_NAME})")
_MODEL_VERSION = re.compile(rf"({_NAME}/{_NAME}):([0-9a-f]{{64}})")

#: Version reported for predictions of official models (``owner/name``), as Replicate does.
HIDDEN_VERSION = "hidden"
IMAGE_FORMATS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}
WAV_HEADER_BYTES = 44


@dataclass(frozen=True)
class Target:
    """The model a prediction runs, as the prediction JSON names it."""

    model: str  # owner/name
    version: str  # 64 hex digits, or "hidden"
    deployment: str | None = None


def _invalid_version() -> Problem:
    return Problem(
        422,
        "The specified version does not exist (or perhaps you don't have permission to use it?)",
        title="Invalid version or not permitted",
    )


def target_for_version(ref: object, known_versions: Mapping[str, str]) -> Target:
    """``POST /v1/predictions``: ``owner/name:<hex>``, a bare ``<hex>`` or ``owner/name``."""
    if not isinstance(ref, str):
        raise _invalid_version()
    if match := _MODEL_VERSION.fullmatch(ref):
        return Target(match[1], match[2])
    if _HEX64.fullmatch(ref):
        # A bare id names no model; use the one it was seen with, or a stable stand-in.
        return Target(known_versions.get(ref, f"emulator/{ref[:12]}"), ref)
    if _MODEL.fullmatch(ref):
        return Target(ref, HIDDEN_VERSION)
    raise _invalid_version()


def target_for_model(owner: str, name: str, *, deployment: bool = False) -> Target:
    """``POST /v1/models/{owner}/{name}/...`` or ``/v1/deployments/{owner}/{name}/...``."""
    model = f"{owner}/{name}"
    if not _MODEL.fullmatch(model):
        raise _invalid_version()
    if deployment:
        # A deployment pins a version; derive a stable one so it reads like the real thing.
        return Target(model, hashlib.sha256(model.encode()).hexdigest(), deployment=model)
    return Target(model, HIDDEN_VERSION)


@dataclass(frozen=True)
class Params:
    """The inputs the emulated model reads; everything else in ``input`` is echoed, unused."""

    prompt: str
    seed: int
    width: int
    height: int
    num_outputs: int
    output_format: str  # as given: png, jpg, jpeg or webp
    duration_s: float  # audio models
    output_bytes: int | None  # emulator_output_bytes: one streamed WAV of exactly this size
    latency_s: float | None  # emulator_latency_s: this prediction's run time


class _Violations:
    """Reads typed, bounded values out of ``input`` and collects what is wrong with them."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.fields: list[dict[str, str]] = []

    def add(self, key: str, kind: str, description: str) -> None:
        self.fields.append({"type": kind, "field": f"input.{key}", "description": description})

    def _bounded(self, key: str, kinds: type | tuple[type, ...], low: float, high: float) -> Any:
        value = self.raw.get(key)
        if value is None:  # absent or null: the model's default
            return None
        if kinds is int and isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON has one number type; Cog's pydantic accepts 2.0 as 2
        if not isinstance(value, kinds) or isinstance(value, bool):
            expected = "integer" if kinds is int else "number"
            self.add(key, "type_error", f"Invalid type. Expected: {expected}")
            return None
        number = cast(float, value)  # an int or a float, checked just above
        if not low <= number <= high:
            self.add(key, "range", f"Must be between {low} and {high}")
            return None
        return number

    def integer(self, key: str, low: int, high: int) -> int | None:
        value = self._bounded(key, int, low, high)
        return None if value is None else int(value)

    def number(self, key: str, low: float, high: float) -> float | None:
        value = self._bounded(key, (int, float), low, high)
        return None if value is None else float(value)

    def problem(self) -> Problem:
        detail = "".join(f"- {f['field']}: {f['description']}\n" for f in self.fields)
        return Problem(422, detail, title="Input validation failed", invalid_fields=self.fields)


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def parse_params(raw: object, *, default_width: int, default_height: int) -> Params:
    """Validate ``input`` as the emulated model's schema would; a 422 lists every bad field."""
    if not isinstance(raw, Mapping):
        detail = "- input: Invalid type. Expected: object\n"
        raise Problem(422, detail, title="Input validation failed")
    check = _Violations(raw)
    prompt = raw.get("prompt", "")
    if not isinstance(prompt, str):
        check.add("prompt", "type_error", "Invalid type. Expected: string")
        prompt = ""
    output_format = raw.get("output_format", "png")
    if output_format not in IMAGE_FORMATS:
        check.add("output_format", "enum", f"Must be one of: {', '.join(IMAGE_FORMATS)}")
    # Replicate picks a random seed; a seed derived from the prompt keeps outputs reproducible.
    prompt_seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
    params = Params(
        prompt=prompt,
        seed=_or(check.integer("seed", 0, 2**32 - 1), prompt_seed),
        width=_or(check.integer("width", 8, 4096), default_width),
        height=_or(check.integer("height", 8, 4096), default_height),
        num_outputs=_or(check.integer("num_outputs", 1, 4), 1),
        output_format=str(output_format),
        duration_s=_or(check.number("duration", 0.1, 60.0), 2.0),
        output_bytes=check.integer("emulator_output_bytes", WAV_HEADER_BYTES, 2**40),
        latency_s=check.number("emulator_latency_s", 0.0, 3600.0),
    )
    if check.fields:
        raise check.problem()
    return params
