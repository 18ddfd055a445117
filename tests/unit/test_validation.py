import math
from typing import Any

import pytest
from google.protobuf import struct_pb2

from mediagen.errors import InvalidArgument
from mediagen.jobs.validation import (
    MAX_EXTRA_INPUT_BYTES,
    MAX_EXTRA_INPUT_DEPTH,
    NOT_FINITE_MESSAGE,
    NUL_MESSAGE,
    JobSpec,
    validate_generate,
)
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb

MODELS = ("stability-ai/sdxl", "acme/audio-gen")


def check(**fields: Any) -> JobSpec:
    return validate_generate(
        pb.GenerateMediaRequest(**fields), default_model=MODELS[0], allowed_models=MODELS
    )


def violations(**fields: Any) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as err:
        check(**fields)
    return {v.field: v.description for v in err.value.violations}


def test_defaults_fill_the_model_input() -> None:
    spec = check(prompt="a red fox")
    assert spec.model == "stability-ai/sdxl"
    assert spec.model_input == {
        "prompt": "a red fox",
        "width": 1024,
        "height": 1024,
        "num_outputs": 1,
        "output_format": "png",
    }


def test_typed_and_extra_parameters_reach_the_model() -> None:
    extra = struct_pb2.Struct()
    extra.update({"scheduler": "K_EULER", "refine": True, "steps": 30, "strength": 0.5})
    params = job_pb2.GenerationParameters(
        width=512,
        height=768,
        seed=0,
        guidance_scale=7.5,
        num_inference_steps=30,
        negative_prompt="blurry",
        output_format=job_pb2.OUTPUT_FORMAT_WEBP,
        extra_input=extra,
    )
    spec = check(prompt="p", model="acme/audio-gen", parameters=params)
    assert spec.model_input == {
        "prompt": "p",
        "width": 512,
        "height": 768,
        "num_outputs": 1,
        "output_format": "webp",
        "num_inference_steps": 30,
        "guidance_scale": 7.5,
        "seed": 0,
        "negative_prompt": "blurry",
        "scheduler": "K_EULER",
        "refine": True,
        "steps": 30,  # a Struct carries 30.0; the model gets the integer back
        "strength": 0.5,
    }
    assert type(spec.model_input["steps"]) is int  # 30 == 30.0, so check the type itself


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"prompt": "x" * 5000}, "prompt"),
        ({"prompt": "p", "model": "unknown/model"}, "model"),
        ({"prompt": "p", "model": "not a model"}, "model"),
        ({"prompt": "p", "parameters": job_pb2.GenerationParameters(width=0)}, "parameters.width"),
        (
            {"prompt": "p", "parameters": job_pb2.GenerationParameters(height=100_000)},
            "parameters.height",
        ),
        (
            {"prompt": "p", "parameters": job_pb2.GenerationParameters(num_outputs=9)},
            "parameters.num_outputs",
        ),
        ({"prompt": "p", "parameters": job_pb2.GenerationParameters(seed=-1)}, "parameters.seed"),
        ({"prompt": "p", "request_id": "not-a-uuid"}, "request_id"),
        ({"prompt": "p", "labels": {"Bad Key": "v"}}, "labels['Bad Key']"),
    ],
)
def test_each_bad_field_is_named(fields: dict[str, Any], field: str) -> None:
    assert field in violations(**fields)


def test_all_problems_are_reported_at_once() -> None:
    found = violations(
        prompt="",
        model="unknown/model",
        parameters=job_pb2.GenerationParameters(width=0, height=100_000),
    )
    assert set(found) == {"prompt", "model", "parameters.width", "parameters.height"}


def test_extra_input_may_not_shadow_typed_fields() -> None:
    extra = struct_pb2.Struct()
    extra.update({"width": 5})
    found = violations(prompt="p", parameters=job_pb2.GenerationParameters(extra_input=extra))
    assert "parameters.extra_input.width" in found


def extra_input(value: dict[str, Any]) -> job_pb2.GenerationParameters:
    extra = struct_pb2.Struct()
    extra.update(value)
    return job_pb2.GenerationParameters(extra_input=extra)


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"guidance": "N"}, "parameters.extra_input.guidance"),
        ({"a": {"b": ["x", "N"]}}, "parameters.extra_input.a.b[1]"),
        ({"list": [[1, {"deep": "N"}]]}, "parameters.extra_input.list[0][1].deep"),
    ],
)
def test_non_finite_numbers_are_named_by_path(
    number: float, value: dict[str, Any], field: str
) -> None:
    def put(item: Any) -> Any:
        if item == "N":
            return number
        if isinstance(item, dict):
            return {k: put(v) for k, v in item.items()}
        if isinstance(item, list):
            return [put(v) for v in item]
        return item

    found = violations(prompt="p", parameters=extra_input(put(value)))
    assert found == {field: NOT_FINITE_MESSAGE}


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_typed_doubles_are_invalid(number: float) -> None:
    found = violations(prompt="p", parameters=job_pb2.GenerationParameters(guidance_scale=number))
    assert found == {"parameters.guidance_scale": NOT_FINITE_MESSAGE}


def test_nul_in_extra_input_strings_and_keys_is_invalid() -> None:
    found = violations(prompt="p", parameters=extra_input({"a": "x\x00y", "b\x00": 1}))
    assert found["parameters.extra_input.a"] == NUL_MESSAGE
    assert "NUL" in found["parameters.extra_input"]


def test_extra_input_nesting_is_bounded() -> None:
    value: Any = "leaf"
    for _ in range(MAX_EXTRA_INPUT_DEPTH + 5):
        value = [value]
    found = violations(prompt="p", parameters=extra_input({"a": value}))
    (field, description), *_ = found.items()
    assert field.startswith("parameters.extra_input.a[0]")
    assert "deeper" in description
    value = "leaf"
    for _ in range(MAX_EXTRA_INPUT_DEPTH - 2):
        value = {"k": value}
    assert check(prompt="p", parameters=extra_input({"a": value})).model_input["a"]["k"]


def test_huge_extra_input_is_refused_by_size_without_walking_it() -> None:
    found = violations(prompt="p", parameters=extra_input({f"k{i}": i for i in range(50_000)}))
    assert found == {
        "parameters.extra_input": f"must be at most {MAX_EXTRA_INPUT_BYTES} bytes as JSON"
    }
