"""Errors never echo caller input unbounded: every status fits gRPC's trailer limit."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from google.rpc import error_details_pb2

from mediagen.errors import (
    MAX_TEXT_BYTES,
    MAX_VIOLATIONS,
    TRUNCATED,
    FieldViolation,
    InvalidArgument,
    JobNotFound,
    bounded,
)
from mediagen.jobs.validation import validate_generate
from mediagen.v1 import media_generation_service_pb2 as pb

#: gRPC's default soft limit on received metadata (grpc.max_metadata_size): beyond it calls
#: start failing at random, beyond 16 KiB always.
SOFT_METADATA_LIMIT = 8 * 1024


def trailer_bytes(error: InvalidArgument | JobNotFound) -> int:
    """What the error costs as gRPC trailers, counted as gRPC does (key + value + 32 each)."""
    status = error.to_status()
    message = quote(status.message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")  # grpc-message
    details = base64.b64encode(status.SerializeToString())  # grpc-status-details-bin
    return (
        len("grpc-status") + 1 + 32
        + len("grpc-message") + len(message) + 32
        + len("grpc-status-details-bin") + len(details) + 32
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "fits"),
    [("short", "short"), ("é" * 100, "é" * 100), ("", "")],
)
def test_short_texts_are_kept(text: str, fits: str) -> None:
    assert bounded(text) == fits


@pytest.mark.parametrize("text", ["x" * 10_000, "é" * 10_000, "🦊" * 10_000, "a" * 199 + "🦊"])
def test_long_texts_are_cut_with_a_marker_on_a_character_boundary(text: str) -> None:
    cut = bounded(text)
    assert cut.endswith(TRUNCATED)
    assert len(cut.encode()) <= MAX_TEXT_BYTES
    assert text.startswith(cut[: -len(TRUNCATED)])


def test_lone_surrogates_become_valid_utf8() -> None:
    assert bounded("a\ud800b") == "a?b"


def test_a_10kb_id_is_not_found_in_a_few_hundred_bytes() -> None:
    error = JobNotFound("🦊" * 10_000)
    assert trailer_bytes(error) < 2 * 1024
    info = error_details_pb2.ResourceInfo()
    assert error.to_status().details[1].Unpack(info)
    assert info.resource_name.endswith(TRUNCATED)


def test_the_worst_bad_request_fits_the_soft_metadata_limit() -> None:
    # As many bad labels as a request holds, each key 10 KB of 4-byte characters.
    labels = {f"{i}" + "🦊" * 2500: "v" * 1000 for i in range(100)}  # bad keys and values
    request = pb.GenerateMediaRequest(prompt="", model="🦊" * 5000, labels=labels)
    with pytest.raises(InvalidArgument) as err:
        validate_generate(request, default_model="a/b", allowed_models=["a/b"])
    assert len(err.value.violations) == MAX_VIOLATIONS
    assert err.value.message.startswith("invalid request: 203 problems, the first 8 listed")
    assert trailer_bytes(err.value) < SOFT_METADATA_LIMIT


def test_violations_keep_their_fields_readable() -> None:
    error = InvalidArgument([FieldViolation("labels['" + "k" * 5000 + "']", "bad")])
    field = error.violations[0].field
    assert field.startswith("labels['kkk") and field.endswith(TRUNCATED)
