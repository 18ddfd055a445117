"""blame: which field of undecodable request bytes is at fault."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError

from mediagen.api.wire import blame
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from tests.support.wire import deep_extra_input, length_delimited

REQUEST = pb.GenerateMediaRequest.DESCRIPTOR


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (length_delimited(1, b"\xff\xfe"), "prompt"),  # invalid UTF-8
        (length_delimited(1, b"ok") + length_delimited(2, b"\xc3"), "model"),
        (
            length_delimited(3, length_delimited(7, b"\xed\xa0\x80")),  # a UTF-8 surrogate
            "parameters.negative_prompt",
        ),
        (length_delimited(5, length_delimited(1, b"\xff") + length_delimited(2, b"v")), "labels"),
        (deep_extra_input(150), "parameters.extra_input"),  # past protobuf's recursion limit
    ],
)
def test_the_field_that_does_not_decode_is_named(raw: bytes, field: str) -> None:
    with pytest.raises(DecodeError):
        pb.GenerateMediaRequest.FromString(raw)
    assert blame(REQUEST, raw) == field


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x0b", b"\x00\x01"])
def test_unframed_bytes_name_no_field(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        pb.GenerateMediaRequest.FromString(raw)
    assert blame(REQUEST, raw) is None


def test_valid_messages_blame_nothing() -> None:
    request = pb.GenerateMediaRequest(
        prompt="a fox",
        labels={"a": "b"},
        parameters=job_pb2.GenerationParameters(width=64, negative_prompt="blur"),
    )
    assert blame(REQUEST, request.SerializeToString()) is None
    assert pb.GenerateMediaRequest.FromString(deep_extra_input(20)).prompt == "a fox"
