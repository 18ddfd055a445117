"""The real replicate 1.0.7 client (async and sync) cannot tell the emulator from Replicate."""

from __future__ import annotations

import asyncio
import io
import itertools
import re
import wave
from datetime import datetime

import httpx
import pytest
from PIL import Image
from replicate.client import Client
from replicate.exceptions import ReplicateError
from replicate.pagination import async_paginate
from replicate.prediction import Prediction

from mediagen.emulator import RunningEmulator
from tests.emulator.helpers import SDXL, TOKEN, VERSION, fetch, finished, first_url
from tests.fixtures.emulator import EmulatorFactory, wait_until


@pytest.mark.parametrize(
    ("how", "model", "reported_model", "version"),
    [
        ("model", SDXL, SDXL, "hidden"),
        ("version", f"{SDXL}:{VERSION}", SDXL, VERSION),
        # A version id alone names no model; the emulator reports a stable stand-in.
        ("bare version", VERSION, "emulator/555555555555", VERSION),
        ("deployment", "acme/sdxl-prod", "acme/sdxl-prod", None),
    ],
)
async def test_each_create_route_runs_to_success(
    client: Client,
    emulator: RunningEmulator,
    how: str,
    model: str,
    reported_model: str,
    version: str | None,
) -> None:
    prompt_input = {"prompt": "a lighthouse", "width": 32, "height": 24}
    if how == "model":
        created = await client.models.predictions.async_create(model=model, input=prompt_input)
    elif how == "deployment":
        created = await client.deployments.predictions.async_create(
            deployment=model, input=prompt_input
        )
    else:
        created = await client.predictions.async_create(version=model, input=prompt_input)

    assert created.status == "starting"
    assert created.output is None and created.completed_at is None
    done = await finished(client, created.id)
    assert done.status == "succeeded"
    assert done.input == prompt_input
    assert re.fullmatch(r"[a-z2-7]{26}", done.id)
    if version is not None:
        assert done.version == version
    else:
        assert re.fullmatch(r"[0-9a-f]{64}", done.version)  # a deployment pins a version
    assert done.model == reported_model
    assert done.metrics is not None and done.metrics["predict_time"] > 0
    assert done.created_at and done.started_at and done.completed_at
    created_at, started_at, completed_at = (
        datetime.fromisoformat(t) for t in (done.created_at, done.started_at, done.completed_at)
    )
    assert created_at < started_at < completed_at
    assert emulator.emulator.stats_json()["creates"] == {how.split()[-1]: 1}


async def test_status_moves_through_starting_processing_succeeded(client: Client) -> None:
    created = await client.models.predictions.async_create(
        model=SDXL, input={"prompt": "steps", "emulator_latency_s": 0.5}
    )
    seen = [created.status]
    while seen[-1] != "succeeded":
        current = await client.predictions.async_get(created.id)
        if current.status != seen[-1]:
            seen.append(current.status)
        if current.status == "processing":
            assert current.started_at is not None and current.metrics is None
        await asyncio.sleep(0.02)
    assert seen == ["starting", "processing", "succeeded"]


async def test_logs_grow_as_tqdm_redraws_separated_by_carriage_returns(client: Client) -> None:
    created = await client.models.predictions.async_create(
        model=SDXL, input={"prompt": "progress", "emulator_latency_s": 0.6}
    )
    snapshots: list[str] = []
    while True:
        current = await client.predictions.async_get(created.id)
        if current.logs and (not snapshots or current.logs != snapshots[-1]):
            snapshots.append(current.logs)
        if current.status == "succeeded":
            break
        await asyncio.sleep(0.05)

    assert len(snapshots) >= 3
    for earlier, later in itertools.pairwise(snapshots):
        assert later.startswith(earlier)  # logs only grow
    final = snapshots[-1]
    assert "\r" in final and final.endswith("| 10/10 [00:00<00:00, 18.18it/s]\n")
    assert "  0%|          | 0/10 [00:00<?, ?it/s]\r" in final
    assert re.search(r" 50%\|█████     \| 5/10 \[", final)
    # The client's own parser reads the first segment of the \r-joined line: the reference's bug.
    assert current.progress is not None and current.progress.current == 0


@pytest.mark.parametrize(
    ("output_format", "pillow_format"),
    [
        ("png", "PNG"),
        ("jpg", "JPEG"),
        ("jpeg", "JPEG"),
        ("webp", "WEBP"),
    ],
)
async def test_outputs_are_images_of_the_requested_size_and_format(
    client: Client, http: httpx.AsyncClient, output_format: str, pillow_format: str
) -> None:
    created = await client.models.predictions.async_create(
        model=SDXL,
        input={
            "prompt": "a red fox",
            "width": 96,
            "height": 40,
            "num_outputs": 2,
            "output_format": output_format,
        },
    )
    done = await finished(client, created.id)

    assert isinstance(done.output, list) and len(done.output) == 2
    for url in done.output:
        assert url.endswith(f".{output_format}")
        response = await fetch(http, url)
        assert response.status_code == 200
        image = Image.open(io.BytesIO(response.content))
        assert (image.format, image.size) == (pillow_format, (96, 40))


async def test_images_are_deterministic_from_prompt_and_seed(
    client: Client, http: httpx.AsyncClient
) -> None:
    async def first_image(prompt_input: dict[str, object]) -> bytes:
        created = await client.models.predictions.async_create(model=SDXL, input=prompt_input)
        done = await finished(client, created.id)
        return (await fetch(http, first_url(done))).content

    same_a, same_b, other = await asyncio.gather(
        first_image({"prompt": "a cat", "seed": 7}),
        first_image({"prompt": "a cat", "seed": 7}),
        first_image({"prompt": "a dog", "seed": 7}),
    )
    assert same_a == same_b
    assert same_a != other


async def test_audio_model_gives_one_wav_url(client: Client, http: httpx.AsyncClient) -> None:
    created = await client.models.predictions.async_create(
        model="meta/musicgen-audio", input={"prompt": "drums", "duration": 0.5}
    )
    done = await finished(client, created.id)

    assert isinstance(done.output, str)
    response = await fetch(http, done.output)
    assert response.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(response.content)) as audio:
        assert audio.getnframes() / audio.getframerate() == pytest.approx(0.5)


async def test_output_bytes_gives_a_streamed_wav_of_exactly_that_size(
    client: Client, http: httpx.AsyncClient
) -> None:
    created = await client.models.predictions.async_create(
        model=SDXL, input={"prompt": "big", "emulator_output_bytes": 3 * 1024 * 1024 + 7}
    )
    done = await finished(client, created.id)

    response = await fetch(http, first_url(done))
    assert len(response.content) == 3 * 1024 * 1024 + 7
    assert int(response.headers["content-length"]) == len(response.content)
    with wave.open(io.BytesIO(response.content)) as audio:
        assert audio.getnframes() == len(response.content) - 44


async def test_sync_client_and_run(emulator: RunningEmulator) -> None:
    sync = Client(api_token=TOKEN, base_url=emulator.base_url)

    def use_sync_client() -> tuple[Prediction, object]:
        created = sync.predictions.create(version=f"{SDXL}:{VERSION}", input={"prompt": "sync"})
        output = sync.run(SDXL, input={"prompt": "run"})
        return created, output

    # The sync client blocks; the emulator shares this event loop, so call it from a thread.
    created, output = await asyncio.to_thread(use_sync_client)
    assert created.status == "starting"
    # http:// URLs stay plain strings in run() (only https:/data: become FileOutput).
    assert isinstance(output, list) and output[0].startswith(emulator.base_url)
    sync._client.close()


async def test_prefer_wait_answers_when_done_with_location(http: httpx.AsyncClient) -> None:
    response = await http.post(
        f"/v1/models/{SDXL}/predictions",
        json={"input": {"prompt": "quick"}},
        headers={"Prefer": "wait=5"},
    )
    body = response.json()
    assert response.status_code == 201
    assert body["status"] == "succeeded" and body["output"]
    assert response.headers["location"] == body["urls"]["get"]


async def test_prefer_wait_times_out_as_starting(client: Client) -> None:
    created = await client.models.predictions.async_create(
        model=SDXL, input={"prompt": "slow", "emulator_latency_s": 3.0}, wait=1
    )
    assert created.status == "starting"
    assert created.output is None
    assert (await client.predictions.async_get(created.id)).status == "processing"


async def test_prefer_wait_can_answer_processing_with_full_output(
    emulator_factory: EmulatorFactory,
) -> None:
    running = await emulator_factory(finalize_s=1.0, latency_s=1.2)
    async with httpx.AsyncClient(base_url=running.base_url) as raw:
        response = await raw.post(
            f"/v1/models/{SDXL}/predictions",
            json={"input": {"prompt": "files first"}},
            headers={"Prefer": "wait"},
        )
    body = response.json()
    assert body["status"] == "processing"
    assert len(body["output"]) == 1


async def test_cancel_a_running_prediction(client: Client) -> None:
    created = await client.models.predictions.async_create(
        model=SDXL, input={"prompt": "stop me", "emulator_latency_s": 5.0}
    )
    canceled = await client.predictions.async_cancel(created.id)

    assert canceled.status == "canceled" and canceled.output is None
    assert canceled.completed_at is not None
    assert (await client.predictions.async_get(created.id)).status == "canceled"


async def test_cancel_a_finished_prediction_changes_nothing(client: Client) -> None:
    created = await client.models.predictions.async_create(model=SDXL, input={"prompt": "done"})
    done = await finished(client, created.id)
    again = await client.predictions.async_cancel(created.id)
    assert again.status == "succeeded" and again.output == done.output


async def test_list_pages_newest_first_with_cursors(emulator_factory: EmulatorFactory) -> None:
    running = await emulator_factory(page_size=3)
    client = Client(api_token=TOKEN, base_url=running.base_url)
    ids = [
        (await client.models.predictions.async_create(model=SDXL, input={"prompt": f"#{i}"})).id
        for i in range(7)
    ]

    pages = [page async for page in async_paginate(client.predictions.async_list)]

    assert [len(page.results) for page in pages] == [3, 3, 1]
    assert [p.id for page in pages for p in page.results] == ids[::-1]
    assert pages[0].previous is None and pages[-1].next is None
    back = await client.predictions.async_list(pages[1].previous)
    assert [p.id for p in back.results] == ids[::-1][:3]
    await client._async_client.aclose()


async def test_list_filters_by_creation_time(client: Client, http: httpx.AsyncClient) -> None:
    first = await client.models.predictions.async_create(model=SDXL, input={"prompt": "old"})
    second = await client.models.predictions.async_create(model=SDXL, input={"prompt": "new"})
    assert first.created_at and second.created_at

    after = (await http.get("/v1/predictions", params={"created_after": first.created_at})).json()
    before = (
        await http.get("/v1/predictions", params={"created_before": second.created_at})
    ).json()

    assert [p["id"] for p in after["results"]] == [second.id]
    assert [p["id"] for p in before["results"]] == [first.id]
    assert after["results"][0]["source"] == "api"


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "You did not pass an authentication token"),
        ("Bearer wrong", "You did not pass a valid authentication token"),
    ],
)
async def test_401_without_the_configured_token(
    emulator_factory: EmulatorFactory, authorization: str | None, detail: str
) -> None:
    running = await emulator_factory(api_token="r8_secret")
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(base_url=running.base_url, headers=headers) as raw:
        response = await raw.get("/v1/predictions")
    assert response.status_code == 401
    assert response.json() == {"title": "Unauthenticated", "detail": detail, "status": 401}


@pytest.mark.parametrize("scheme", ["Bearer", "Token"])
async def test_both_token_schemes_are_accepted(
    emulator_factory: EmulatorFactory, scheme: str
) -> None:
    running = await emulator_factory(api_token="r8_secret")
    async with httpx.AsyncClient(base_url=running.base_url) as raw:
        response = await raw.get(
            "/v1/predictions", headers={"Authorization": f"{scheme} r8_secret"}
        )
    assert response.status_code == 200


async def test_unknown_prediction_is_404(client: Client) -> None:
    with pytest.raises(ReplicateError) as caught:
        await client.predictions.async_get("doesnotexist")
    assert caught.value.status == 404
    assert caught.value.detail == "The requested resource could not be found."


async def test_bad_version_is_422(client: Client) -> None:
    with pytest.raises(ReplicateError) as caught:
        await client.predictions.async_create(version="not a version", input={"prompt": "x"})
    assert caught.value.status == 422
    assert caught.value.title == "Invalid version or not permitted"


async def test_bad_input_is_422_naming_every_field(http: httpx.AsyncClient) -> None:
    response = await http.post(
        f"/v1/models/{SDXL}/predictions",
        json={"input": {"prompt": "x", "width": 99999, "output_format": "gif", "seed": "7"}},
    )
    assert response.status_code == 422
    fields = {f["field"] for f in response.json()["invalid_fields"]}
    assert fields == {"input.width", "input.output_format", "input.seed"}


async def test_webhook_secret(client: Client) -> None:
    secret = await client.webhooks.default.async_secret()
    assert secret.key.startswith("whsec_")


async def test_retention_removes_data_and_files(emulator_factory: EmulatorFactory) -> None:
    running = await emulator_factory(retention_s=0.3)
    client = Client(api_token=TOKEN, base_url=running.base_url)
    created = await client.models.predictions.async_create(model=SDXL, input={"prompt": "gone"})
    done = await finished(client, created.id)
    async with httpx.AsyncClient(base_url=running.base_url) as raw:
        assert (await fetch(raw, first_url(done))).status_code == 200

        removed = await wait_until(
            lambda: raw.get(f"/v1/predictions/{created.id}"),
            lambda r: r.json()["data_removed"],
        )
        body = removed.json()
        assert (body["status"], body["input"], body["output"], body["logs"]) == (
            "succeeded",
            None,
            None,
            None,
        )
        assert (await fetch(raw, first_url(done))).status_code == 404
    await client._async_client.aclose()


async def test_cancel_after_deadline_in_the_queue_aborts(http: httpx.AsyncClient) -> None:
    response = await http.post(
        f"/v1/models/{SDXL}/predictions",
        json={"input": {"prompt": "late"}},
        headers={"Cancel-After": "10ms", "Prefer": "wait=2"},
    )
    body = response.json()
    assert body["status"] == "aborted"
    assert body["started_at"] is None and body["output"] is None
