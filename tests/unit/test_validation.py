from typing import Any

import pytest
from google.protobuf import struct_pb2

from mediagen.errors import InvalidArgument
from mediagen.jobs.validation import JobSpec, validate_generate
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
