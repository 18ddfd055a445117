"""Shared by the emulator tests: names, and waiting for a prediction to finish."""

from __future__ import annotations

import httpx
from replicate.client import Client
from replicate.prediction import Prediction

from tests.fixtures.emulator import wait_until

TOKEN = "r8_test-token"
SDXL = "stability-ai/sdxl"
VERSION = "5" * 64


async def finished(client: Client, prediction_id: str) -> Prediction:
    """Poll with the client until the prediction is succeeded, failed or canceled."""
    return await wait_until(
        lambda: client.predictions.async_get(prediction_id),
        lambda p: p.status in {"succeeded", "failed", "canceled"},
    )


def first_url(prediction: Prediction) -> str:
    """The output URL (a string output) or the first of a list output."""
    output = prediction.output
    url = output[0] if isinstance(output, list) else output
    assert isinstance(url, str), f"no URL in output {output!r}"
    return url


async def fetch(http: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET an output file (an absolute URL) as FileOutput would: with the token."""
    return await http.get(url, headers={"Authorization": f"Bearer {TOKEN}"})


async def raw_status(http: httpx.AsyncClient, prediction_id: str, status: str) -> dict[str, object]:
    """Poll the raw JSON (which the client may not parse) until it has ``status``."""
    response = await wait_until(
        lambda: http.get(f"/v1/predictions/{prediction_id}"),
        lambda r: r.json()["status"] == status,
    )
    body: dict[str, object] = response.json()
    return body
