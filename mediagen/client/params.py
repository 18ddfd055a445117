"""Generation parameters from loose values: ``--param k=v`` strings or a plain mapping."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from contextlib import suppress
from typing import Final

from mediagen.client.errors import ParameterError
from mediagen.v1 import job_pb2

_INT_KEYS: Final = frozenset({"width", "height", "num_outputs", "num_inference_steps", "seed"})
_OUTPUT_FORMATS: Final[Mapping[str, job_pb2.OutputFormat.ValueType]] = {
    "png": job_pb2.OUTPUT_FORMAT_PNG,
    "jpeg": job_pb2.OUTPUT_FORMAT_JPEG,
    "jpg": job_pb2.OUTPUT_FORMAT_JPEG,
    "webp": job_pb2.OUTPUT_FORMAT_WEBP,
}


def _to_int(key: str, value: object) -> int:
    # bool is an int subclass; `width=True` is a mistake, not 1.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        with suppress(ValueError):
            return int(value.strip())
    raise ParameterError(key, f"expected an integer, got {value!r}")


def _to_float(key: str, value: object) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with suppress(ValueError):
            number = float(value.strip())
    if number is None or not math.isfinite(number):
        raise ParameterError(key, f"expected a number, got {value!r}")
    return number


def _to_output_format(key: str, value: object) -> job_pb2.OutputFormat.ValueType:
    if isinstance(value, str) and value.strip().lower() in _OUTPUT_FORMATS:
        return _OUTPUT_FORMATS[value.strip().lower()]
    choices = ", ".join(_OUTPUT_FORMATS)
    raise ParameterError(key, f"expected one of {choices}, got {value!r}")


def _parse_loose(text: str) -> object:
    """A CLI value as JSON when it is JSON (numbers, true/false, null, lists, objects), else text.

    Non-finite numbers (``NaN``, ``1e999``) stay text: a Struct would carry them, but no JSON
    encoder downstream could.
    """

    def refuse(constant: str) -> object:
        raise ValueError(constant)

    try:
        value: object = json.loads(text, parse_constant=refuse)
    except ValueError:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value


def parameters_from_mapping(values: Mapping[str, object]) -> job_pb2.GenerationParameters:
    """Build ``GenerationParameters`` from a plain mapping.

    The typed fields take their own type or a string that parses as it: ``width``, ``height``,
    ``num_outputs``, ``num_inference_steps`` and ``seed`` are integers, ``guidance_scale`` is a
    number, ``negative_prompt`` is text, ``output_format`` is ``png``, ``jpeg`` (or ``jpg``) or
    ``webp``. Every other key goes into ``extra_input`` unchanged, so its value must be
    JSON-like (None, bool, number, str, list, dict).

    For example ``{"width": "512", "output_format": "jpg", "lora_scale": 0.6}`` sets width 512,
    JPEG output, and ``extra_input.lora_scale`` 0.6.

    Range checks (a width of 64 to 4096 and so on) are the server's; this only rejects values of
    the wrong kind, and numbers a protobuf field cannot hold, with a :class:`ParameterError`
    naming the key.
    """
    params = job_pb2.GenerationParameters()
    for key, value in values.items():
        if not key:
            raise ParameterError("", "parameter name is empty")
        typed: object
        if key in _INT_KEYS:
            typed = _to_int(key, value)
        elif key == "guidance_scale":
            typed = _to_float(key, value)
        elif key == "output_format":
            typed = _to_output_format(key, value)
        elif key == "negative_prompt":
            if not isinstance(value, str):
                raise ParameterError(key, f"expected text, got {value!r}")
            typed = value
        else:
            try:
                params.extra_input[key] = value  # type: ignore[assignment]
            except (TypeError, ValueError) as exc:
                raise ParameterError(key, f"cannot be sent as model input: {exc}") from exc
            continue
        try:
            setattr(params, key, typed)
        except ValueError as exc:  # int32/int64 overflow
            raise ParameterError(key, f"{typed!r} is out of range") from exc
    return params


def parse_params(items: Iterable[str]) -> job_pb2.GenerationParameters:
    """Build ``GenerationParameters`` from ``KEY=VALUE`` strings, as ``--param`` gives them.

    Values of typed keys are parsed as in :func:`parameters_from_mapping`; values of other keys
    are parsed loosely as JSON (``steps_ratio=0.5`` is a number, ``hdr=true`` a bool,
    ``style=anime`` a string) and go to ``extra_input``. A key given twice is an error.
    """
    values: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError("", f"expected KEY=VALUE, got {item!r}")
        if key in values:
            raise ParameterError(key, "given more than once")
        values[key] = raw if _is_typed(key) else _parse_loose(raw)
    return parameters_from_mapping(values)


def _is_typed(key: str) -> bool:
    return key in _INT_KEYS or key in {"guidance_scale", "output_format", "negative_prompt"}
