"""Injected faults, as the real replicate 1.0.7 client (and plain httpx) experience them."""

from __future__ import annotations

import httpx
import pytest
from pydantic.v1 import ValidationError
from replicate.client import Client
from replicate.exceptions import ReplicateError

from mediagen.emulator import (
    Delay,
    Drop,
    Outcome,
    Route,
    RunningEmulator,
    ServerError,
    Throttle,
)
from mediagen.providers.base import PredictionStatus
from tests.emulator.helpers import SDXL, TOKEN, finished, raw_status

PROMPT = {"prompt": "a cat"}


async def create(client: Client, prompt: str = "a cat") -> str:
    created = await client.models.predictions.async_create(model=SDXL, input={"prompt": prompt})
    return created.id


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_error_on_create_is_raised_once_and_creates_nothing(
    client: Client, emulator: RunningEmulator, status: int
) -> None:
    emulator.emulator.inject(ServerError(route=Route.CREATE, status=status))

    with pytest.raises(ReplicateError) as caught:
        await create(client)  # the client never retries a POST
    assert caught.value.status == status
    assert emulator.emulator.stats_json()["predictions"] == 0
    await create(client)  # times=1: spent
    assert emulator.emulator.stats_json()["predictions"] == 1


async def test_client_retries_503_on_get_by_itself(
    client: Client, emulator: RunningEmulator
) -> None:
    prediction_id = await create(client)
    emulator.emulator.inject(ServerError(route=Route.GET, status=503, times=2))

    await client.predictions.async_get(prediction_id)
    assert emulator.emulator.stats_json()["requests"]["get"] == 3


async def test_client_does_not_retry_500_on_get(client: Client, emulator: RunningEmulator) -> None:
    prediction_id = await create(client)
    emulator.emulator.inject(ServerError(route=Route.GET, status=500))

    with pytest.raises(ReplicateError) as caught:
        await client.predictions.async_get(prediction_id)
    assert caught.value.status == 500


@pytest.mark.parametrize("header", [True, False])
async def test_throttle_sends_429_with_retry_after(
    http: httpx.AsyncClient, emulator: RunningEmulator, header: bool
) -> None:
    emulator.emulator.inject(Throttle(route=Route.CREATE, retry_after_s=7, header=header))

    response = await http.post(f"/v1/models/{SDXL}/predictions", json={"input": PROMPT})

    assert response.status_code == 429
    assert response.json() == {
        "title": "Too Many Requests",
        "detail": "Request was throttled. Your rate limit resets in ~7s.",
        "status": 429,
        "retry_after": 7,
    }
    assert response.headers.get("retry-after") == ("7" if header else None)


async def test_client_sees_429_on_create(client: Client, emulator: RunningEmulator) -> None:
    emulator.emulator.inject(Throttle(route=Route.CREATE, retry_after_s=3))
    with pytest.raises(ReplicateError) as caught:
        await create(client)
    assert caught.value.status == 429
    assert caught.value.detail is not None and "resets in ~3s" in caught.value.detail


async def test_slow_response_trips_the_client_read_timeout(emulator: RunningEmulator) -> None:
    impatient = Client(api_token=TOKEN, base_url=emulator.base_url, timeout=httpx.Timeout(0.2))
    emulator.emulator.inject(Delay(route=Route.LIST, delay_s=0.6))

    with pytest.raises(httpx.ReadTimeout):
        await impatient.predictions.async_list()
    await impatient._async_client.aclose()


@pytest.mark.parametrize(("after", "predictions"), [(False, 0), (True, 1)])
async def test_dropped_connection_on_create(
    client: Client, emulator: RunningEmulator, after: bool, predictions: int
) -> None:
    emulator.emulator.inject(Drop(route=Route.CREATE, after=after))

    with pytest.raises(httpx.RemoteProtocolError):
        await create(client)
    # Before: nothing was created. After: it was, and only the answer was lost.
    assert emulator.emulator.stats_json()["predictions"] == predictions


async def test_dropped_connection_on_get_is_not_retried(
    client: Client, emulator: RunningEmulator
) -> None:
    prediction_id = await create(client)
    emulator.emulator.inject(Drop(route=Route.GET))

    with pytest.raises(httpx.RemoteProtocolError):
        await client.predictions.async_get(prediction_id)
    assert (await client.predictions.async_get(prediction_id)).id == prediction_id


async def test_server_error_after_create_keeps_the_prediction(
    client: Client, emulator: RunningEmulator
) -> None:
    emulator.emulator.inject(ServerError(route=Route.CREATE, status=502, after=True))
    with pytest.raises(ReplicateError):
        await create(client)
    assert emulator.emulator.stats_json()["predictions"] == 1


async def test_failed_outcome_targets_the_matching_prompt(
    client: Client, emulator: RunningEmulator
) -> None:
    emulator.emulator.inject(Outcome(status=PredictionStatus.FAILED, error="CUDA OOM", match="cat"))

    dog = await finished(client, await create(client, "a dog"))
    cat = await finished(client, await create(client, "a cat"))

    assert dog.status == "succeeded"
    assert (cat.status, cat.error, cat.output) == ("failed", "CUDA OOM", None)
    assert cat.logs is not None and cat.logs.endswith("CUDA OOM\n")


async def test_canceled_outcome(client: Client, emulator: RunningEmulator) -> None:
    emulator.emulator.inject(Outcome(status=PredictionStatus.CANCELED))
    done = await finished(client, await create(client))
    assert (done.status, done.error) == ("canceled", None)


async def test_aborted_outcome_breaks_the_plain_client(
    client: Client, http: httpx.AsyncClient, emulator: RunningEmulator
) -> None:
    emulator.emulator.inject(Outcome(status=PredictionStatus.ABORTED))
    prediction_id = await create(client)
    body = await raw_status(http, prediction_id, "aborted")

    assert body["started_at"] is None and body["completed_at"] is not None
    with pytest.raises(ValidationError):
        await client.predictions.async_get(prediction_id)


async def test_get_fault_matches_the_prompt_of_the_prediction(
    client: Client, emulator: RunningEmulator
) -> None:
    cat, dog = await create(client, "a cat"), await create(client, "a dog")
    emulator.emulator.inject(ServerError(route=Route.GET, status=500, match="cat", times=None))

    await client.predictions.async_get(dog)
    for _ in range(2):  # times=None: until cleared
        with pytest.raises(ReplicateError):
            await client.predictions.async_get(cat)
    emulator.emulator.clear_faults()
    await client.predictions.async_get(cat)


async def test_control_endpoints_arm_list_and_clear_faults(
    client: Client, http: httpx.AsyncClient
) -> None:
    rules = [
        {"kind": "error", "route": "create", "status": 503, "times": 2},
        {"kind": "outcome", "status": "failed", "error": "boom", "match": "cat"},
    ]
    armed = await http.post("/_emulator/faults", json=rules)
    assert armed.status_code == 201
    assert [(r["kind"], r["remaining"]) for r in armed.json()["rules"]] == [
        ("error", 2),
        ("outcome", 1),
    ]

    with pytest.raises(ReplicateError):
        await create(client)
    listed = (await http.get("/_emulator/faults")).json()["rules"]
    assert [r["remaining"] for r in listed] == [1, 1]

    assert (await http.delete("/_emulator/faults")).status_code == 204
    assert (await http.get("/_emulator/faults")).json() == {"rules": []}
    await create(client)
    stats = (await http.get("/_emulator/stats")).json()
    assert stats["requests"]["create"] == 2
    assert (stats["predictions"], stats["faults_applied"]) == (1, 1)


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "explode"},
        {"kind": "error", "status": 404},
        {"kind": "error", "route": "nowhere"},
        {"kind": "delay", "delay_s": "slow"},
        {"kind": "drop", "colour": "red"},
        {"kind": "outcome", "status": "succeeded"},
    ],
)
async def test_control_endpoint_rejects_bad_rules(
    http: httpx.AsyncClient, rule: dict[str, object]
) -> None:
    response = await http.post("/_emulator/faults", json=rule)
    assert response.status_code == 400
    assert response.json()["title"] == "Invalid fault rule"


async def test_reset_forgets_predictions(client: Client, http: httpx.AsyncClient) -> None:
    prediction_id = await create(client)
    assert (await http.post("/_emulator/reset")).status_code == 204
    assert (await http.get("/_emulator/stats")).json()["predictions"] == 0
    assert (await http.get(f"/v1/predictions/{prediction_id}")).status_code == 404


async def test_output_rule_chooses_what_a_matching_prediction_returns(
    client: Client, http: httpx.AsyncClient
) -> None:
    chosen = {"images": ["http://127.0.0.1:1/x.png", "data:,hi"], "n": 2}
    rule = {"kind": "output", "output": chosen, "match": "cat", "times": 1}
    armed = await http.post("/_emulator/faults", json=rule)
    assert armed.status_code == 201 and armed.json()["rules"][0]["output"] == chosen

    dog = await finished(client, await create(client, "a dog"))
    cat = await finished(client, await create(client, "a cat"))
    again = await finished(client, await create(client, "a cat"))

    assert isinstance(dog.output, list) and "/files/" in dog.output[0]
    assert (cat.status, cat.output) == ("succeeded", chosen)
    assert isinstance(again.output, list) and "/files/" in again.output[0]  # spent after one
