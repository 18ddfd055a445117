"""The provider's pure helpers: output shapes, retry hints, model references, data: URIs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mediagen.providers.base import PredictionStatus, ProviderError
from mediagen.providers.replicate import (
    ModelRef,
    output_urls,
    prediction_from_json,
)
from mediagen.providers.retry_hint import retry_after_s

HEX = "ab" * 32


class _FileOutput:
    """Stands in for replicate's FileOutput: its str() is its URL."""

    def __str__(self) -> str:
        return "https://replicate.delivery/x/out.png"


@pytest.mark.parametrize(
    ("output", "urls"),
    [
        (None, ()),
        ("https://a/1.png", ("https://a/1.png",)),
        (["https://a/1.png", "http://b/2.png"], ("https://a/1.png", "http://b/2.png")),
        ({"image": "https://a/1.png", "seed": 42, "text": "hello"}, ("https://a/1.png",)),
        (
            {"frames": ["data:image/png;base64,AA=="], "audio": None},
            ("data:image/png;base64,AA==",),
        ),
        ("just some words", ()),
        (_FileOutput(), ("https://replicate.delivery/x/out.png",)),
    ],
)
def test_output_urls(output: Any, urls: tuple[str, ...]) -> None:
    assert output_urls(output) == urls


NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "body", "seconds"),
    [
        ("5", None, 5.0),
        (" 1.5 ", None, 1.5),
        ("Wed, 01 Jan 2025 12:00:30 GMT", None, 30.0),
        ("2025-01-01T12:00:10+00:00", None, 10.0),
        ("Wed, 01 Jan 2025 11:00:00 GMT", None, 0.0),  # already past
        ("5", {"retry_after": 9}, 5.0),  # the header wins
        (None, {"retry_after": 9, "detail": "resets in ~30s"}, 9.0),
        (None, {"detail": "Request was throttled. Your rate limit resets in ~30s."}, 30.0),
        ("soon", {"detail": "no number here"}, None),
        (None, None, None),
    ],
)
def test_retry_after(header: str | None, body: Any, seconds: float | None) -> None:
    assert retry_after_s(header, body, now=NOW) == seconds


@pytest.mark.parametrize(
    ("ref", "model", "version"),
    [
        ("stability-ai/sdxl", "stability-ai/sdxl", None),
        (f"stability-ai/sdxl:{HEX}", "stability-ai/sdxl", HEX),
        (HEX, None, HEX),
    ],
)
def test_model_refs(ref: str, model: str | None, version: str | None) -> None:
    parsed = ModelRef.parse(ref)
    assert (parsed.model, parsed.version) == (model, version)


@pytest.mark.parametrize("ref", ["sdxl", "a/b/c", "a/b:latest", "a/b:" + HEX[:10], ""])
def test_bad_model_refs_are_permanent(ref: str) -> None:
    with pytest.raises(ProviderError) as caught:
        ModelRef.parse(ref)
    assert not caught.value.transient


def test_prediction_from_json_reads_aborted_and_metrics() -> None:
    prediction = prediction_from_json(
        {
            "id": "p1",
            "status": "aborted",
            "logs": None,
            "output": None,
            "metrics": {"predict_time": 1.25, "total_time": 2},
        }
    )
    assert prediction.status is PredictionStatus.ABORTED and prediction.status.terminal
    assert (prediction.logs, prediction.predict_time_s) == ("", 1.25)


def test_unknown_status_is_transient() -> None:
    with pytest.raises(ProviderError) as caught:
        prediction_from_json({"id": "p1", "status": "hibernating"})
    assert caught.value.transient and not caught.value.ambiguous
