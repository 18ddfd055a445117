"""Validation of GenerateMedia requests, and the model input they become. Pure: no I/O.

Every problem is reported at once, as ``google.rpc.BadRequest`` field violations with proto field
paths, so a caller fixes a request in one round trip. Nothing is stored for a rejected request.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format, struct_pb2

from mediagen.errors import FieldViolation, InvalidArgument, bounded
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as service_pb2

MAX_PROMPT_CHARS = 2000
MAX_LABELS = 32
MAX_LABEL_VALUE_CHARS = 256
MAX_EXTRA_INPUT_BYTES = 16 * 1024
#: Objects and lists in extra_input nest at most this deep (model inputs are shallow).
MAX_EXTRA_INPUT_DEPTH = 32
#: Problems reported for one extra_input before the walk stops.
_MAX_EXTRA_PROBLEMS = 8
NUL_MESSAGE = "must not contain NUL (U+0000)"
NOT_FINITE_MESSAGE = "must be a finite number (NaN and Infinity are not allowed)"
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# owner/name, optionally :<64-hex version>, as Replicate spells model references.
MODEL_REFERENCE = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*(:[0-9a-f]{64})?$")

#: (field, inclusive minimum, inclusive maximum) for the typed numeric parameters.
_RANGES: tuple[tuple[str, float, float], ...] = (
    ("width", 64, 4096),
    ("height", 64, 4096),
    ("num_outputs", 1, 4),
    ("num_inference_steps", 1, 500),
    ("guidance_scale", 0, 50),
    ("seed", 0, 2**32 - 1),
)

_FORMATS = {
    job_pb2.OUTPUT_FORMAT_UNSPECIFIED: "png",
    job_pb2.OUTPUT_FORMAT_PNG: "png",
    job_pb2.OUTPUT_FORMAT_JPEG: "jpg",
    job_pb2.OUTPUT_FORMAT_WEBP: "webp",
}
DEFAULT_SIZE = 1024


@dataclass(frozen=True)
class JobSpec:
    """A validated request: what the store persists and the worker sends to the provider."""

    prompt: str
    model: str
    parameters: job_pb2.GenerationParameters
    model_input: dict[str, Any]
    request_id: str | None
    labels: dict[str, str]


def validate_generate(
    request: service_pb2.GenerateMediaRequest,
    *,
    default_model: str,
    allowed_models: Sequence[str],
) -> JobSpec:
    """Check ``request`` and build its :class:`JobSpec`; raises :class:`InvalidArgument`."""
    violations: list[FieldViolation] = []
    prompt = request.prompt
    if not prompt.strip():
        violations.append(FieldViolation("prompt", "must not be empty", "REQUIRED"))
    elif len(prompt) > MAX_PROMPT_CHARS:
        violations.append(
            FieldViolation(
                "prompt",
                f"must be at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}",
                "TOO_LONG",
            )
        )
    elif "\x00" in prompt:
        # PostgreSQL cannot store NUL in a text column; refused here it is the caller's
        # INVALID_ARGUMENT instead of a failed INSERT (INTERNAL).
        violations.append(FieldViolation("prompt", NUL_MESSAGE, "INVALID_CHARACTER"))

    model = request.model.strip() or default_model
    if not MODEL_REFERENCE.match(model):
        violations.append(
            FieldViolation(
                "model", f"{bounded(model, 60)!r} is not an owner/name[:version] model reference"
            )
        )
    elif model not in allowed_models:
        violations.append(
            FieldViolation(
                "model",
                f"{bounded(model, 60)!r} is not allowed here; allowed: {', '.join(allowed_models)}",
                "MODEL_NOT_ALLOWED",
            )
        )

    violations += _check_parameters(request.parameters)
    violations += _check_labels(dict(request.labels))

    request_id = request.request_id or None
    if request_id is not None:
        try:
            request_id = str(uuid.UUID(request_id))
        except ValueError:
            violations.append(FieldViolation("request_id", "must be a UUID"))

    if violations:
        raise InvalidArgument(violations)
    return JobSpec(
        prompt=prompt,
        model=model,
        parameters=request.parameters,
        model_input=model_input(prompt, request.parameters),
        request_id=request_id,
        labels=dict(request.labels),
    )


def _check_parameters(params: job_pb2.GenerationParameters) -> list[FieldViolation]:
    violations = []
    for name, low, high in _RANGES:
        if params.HasField(name):  # type: ignore[arg-type]
            value = getattr(params, name)
            if not math.isfinite(value):
                violations.append(
                    FieldViolation(f"parameters.{name}", NOT_FINITE_MESSAGE, "NOT_FINITE")
                )
            elif not low <= value <= high:
                violations.append(
                    FieldViolation(
                        f"parameters.{name}",
                        f"must be between {low:g} and {high:g}, got {value:g}",
                        "OUT_OF_RANGE",
                    )
                )
    if len(params.negative_prompt) > MAX_PROMPT_CHARS:
        violations.append(
            FieldViolation(
                "parameters.negative_prompt",
                f"must be at most {MAX_PROMPT_CHARS} characters",
                "TOO_LONG",
            )
        )
    elif "\x00" in params.negative_prompt:
        # The same rule as the prompt: both are text for the model.
        violations.append(
            FieldViolation("parameters.negative_prompt", NUL_MESSAGE, "INVALID_CHARACTER")
        )
    if params.output_format not in _FORMATS:
        violations.append(
            FieldViolation("parameters.output_format", f"unknown format {params.output_format}")
        )
    if params.HasField("extra_input"):
        violations += _check_extra_input(params.extra_input)
    return violations


def _check_extra_input(extra_input: struct_pb2.Struct) -> list[FieldViolation]:
    where = "parameters.extra_input"
    too_long = FieldViolation(
        where, f"must be at most {MAX_EXTRA_INPUT_BYTES} bytes as JSON", "TOO_LONG"
    )
    # The wire size is a cheap upper bound on the work below (JSON is never much shorter).
    if extra_input.ByteSize() > 4 * MAX_EXTRA_INPUT_BYTES:
        return [too_long]
    problems = _struct_problems(extra_input, where)
    if problems:  # JSON cannot hold them: report them before anything converts
        return problems
    violations = []
    extra = json_format.MessageToDict(extra_input)
    typed = {f.name for f in job_pb2.GenerationParameters.DESCRIPTOR.fields} | {"prompt"}
    for key in sorted(set(extra) & typed):
        violations.append(
            FieldViolation(
                f"{where}.{key}",
                "is a typed parameter; set it in parameters instead",
                "DUPLICATE_PARAMETER",
            )
        )
    if len(json.dumps(extra)) > MAX_EXTRA_INPUT_BYTES:
        violations.append(too_long)
    return violations


def _struct_problems(struct: struct_pb2.Struct, where: str) -> list[FieldViolation]:
    """Values JSON (and the model) cannot take: NaN and Infinity, NUL in strings and keys
    (PostgreSQL refuses it), nesting past :data:`MAX_EXTRA_INPUT_DEPTH`; each by its path."""
    problems: list[FieldViolation] = []
    pending: list[tuple[str, struct_pb2.Value, int]] = []

    def push_fields(fields: Any, path: str, depth: int) -> None:
        for key in sorted(fields, reverse=True):  # popped in key order
            if "\x00" in key:
                problems.append(FieldViolation(path, f"keys {NUL_MESSAGE}", "INVALID_CHARACTER"))
            pending.append((f"{path}.{bounded(key, 80)}", fields[key], depth))

    push_fields(struct.fields, where, 1)
    while pending and len(problems) < _MAX_EXTRA_PROBLEMS:
        path, value, depth = pending.pop()
        kind = value.WhichOneof("kind")
        if kind == "number_value" and not math.isfinite(value.number_value):
            problems.append(FieldViolation(path, NOT_FINITE_MESSAGE, "NOT_FINITE"))
        elif kind == "string_value" and "\x00" in value.string_value:
            problems.append(FieldViolation(path, NUL_MESSAGE, "INVALID_CHARACTER"))
        elif kind in ("struct_value", "list_value") and depth >= MAX_EXTRA_INPUT_DEPTH:
            problems.append(
                FieldViolation(
                    path, f"nests deeper than {MAX_EXTRA_INPUT_DEPTH} levels", "TOO_DEEP"
                )
            )
        elif kind == "struct_value":
            push_fields(value.struct_value.fields, path, depth + 1)
        elif kind == "list_value":
            items = value.list_value.values
            pending.extend(
                (f"{path}[{i}]", items[i], depth + 1) for i in reversed(range(len(items)))
            )
    return problems


def _check_labels(labels: dict[str, str]) -> list[FieldViolation]:
    violations = []
    if len(labels) > MAX_LABELS:
        violations.append(FieldViolation("labels", f"at most {MAX_LABELS} labels"))
    for key, value in sorted(labels.items()):
        where = f"labels[{bounded(key, 80)!r}]"  # a key may be as long as the whole request
        if not _LABEL_KEY.match(key):
            violations.append(
                FieldViolation(where, "keys are 1-63 characters [a-z0-9_-] starting with a letter")
            )
        if len(value) > MAX_LABEL_VALUE_CHARS:
            violations.append(
                FieldViolation(where, f"values are at most {MAX_LABEL_VALUE_CHARS} characters")
            )
    return violations


def model_input(prompt: str, params: job_pb2.GenerationParameters) -> dict[str, Any]:
    """The provider input for a validated request: typed fields first, then extra_input."""
    data: dict[str, Any] = {
        "prompt": prompt,
        "width": params.width if params.HasField("width") else DEFAULT_SIZE,
        "height": params.height if params.HasField("height") else DEFAULT_SIZE,
        "num_outputs": params.num_outputs if params.HasField("num_outputs") else 1,
        "output_format": _FORMATS.get(params.output_format, "png"),
    }
    for name in ("num_inference_steps", "guidance_scale", "seed"):
        if params.HasField(name):
            data[name] = getattr(params, name)
    if params.negative_prompt:
        data["negative_prompt"] = params.negative_prompt
    if params.HasField("extra_input"):
        data.update(_whole_numbers_as_ints(json_format.MessageToDict(params.extra_input)))
    return data


def _whole_numbers_as_ints(value: Any) -> Any:
    """A Struct holds every number as a double, so an integer input such as ``steps: 30``
    arrives as 30.0; send whole numbers as JSON integers, as the caller wrote them."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers_as_ints(item) for item in value]
    return value
