"""Completion by webhook, end to end: the embedded service (worker, store, gateway) and the real
emulator, which signs and sends its completion webhooks to the gateway. Polling is only the
fallback here (MEDIAGEN_WEBHOOK_URL set), so a job done within seconds was woken by its
webhook; refused, repeated and misdirected webhooks change nothing."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest_asyncio
from prometheus_client import REGISTRY

from mediagen.embedded import Embedded
from mediagen.emulator import Emulator, Route, ServerError, Webhook, WebhookAction
from mediagen.emulator.prediction import EmulatedPrediction
from mediagen.emulator.webhooks import signed_headers
from mediagen.providers.marker import Marker
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.embedded import embedded_settings
from tests.fixtures.emulator import small_request, wait_until

Stub = pb_grpc.MediaGenerationServiceStub
PATH = "/webhooks/replicate"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _start(tmp_path: Path, fallback_poll_s: float) -> AsyncIterator[tuple[Embedded, Stub]]:
    port = _free_port()
    settings = embedded_settings(
        tmp_path / "data",
        http_port=port,
        webhook_url=f"http://127.0.0.1:{port}{PATH}",
        webhook_fallback_poll_s=fallback_poll_s,
    )
    app = Embedded(settings)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.grpc_target) as channel:
            yield app, pb_grpc.MediaGenerationServiceStub(channel)
    finally:
        await app.stop()


@pytest_asyncio.fixture
async def hooked(tmp_path: Path) -> AsyncIterator[tuple[Embedded, Stub]]:
    """Webhooks expected; the fallback poll (30 s) would come far too late for any test."""
    async for started in _start(tmp_path, fallback_poll_s=30.0):
        yield started


@pytest_asyncio.fixture
async def polled(tmp_path: Path) -> AsyncIterator[tuple[Embedded, Stub]]:
    """Webhooks expected, with a fallback poll short enough to wait for."""
    async for started in _start(tmp_path, fallback_poll_s=0.5):
        yield started


def emulator_of(app: Embedded) -> Emulator:
    emulator: Emulator = app.emulator.emulator
    return emulator


async def watch(stub: Stub, job_id: str) -> list[job_pb2.JobEvent]:
    call = stub.WatchJob(pb.WatchJobRequest(id=job_id), timeout=15)
    return [response.event async for response in call]


async def prediction_of(app: Embedded, job_id: str) -> EmulatedPrediction:
    def find() -> EmulatedPrediction | None:
        for prediction in emulator_of(app).predictions:
            marker = Marker.from_webhook_url(prediction.webhook)
            if marker is not None and marker.job_id == job_id:
                return prediction
        return None

    async def probe() -> EmulatedPrediction | None:
        return find()

    found = await wait_until(probe, lambda p: p is not None)
    assert found is not None
    return found


def gets(app: Embedded) -> int:
    return emulator_of(app).stats.requests[Route.GET]


def webhook_count(outcome: str) -> float:
    return REGISTRY.get_sample_value("mediagen_webhooks_received_total", {"outcome": outcome}) or 0


def answered(status: int) -> float:
    """Webhook requests the gateway answered with ``status`` (its HTTP metrics)."""
    labels = {"method": "POST", "route": PATH, "status": str(status)}
    return REGISTRY.get_sample_value("mediagen_http_requests_total", labels) or 0


async def post_webhook(
    app: Embedded,
    body: dict[str, Any],
    *,
    webhook_id: str = "msg_test",
    secret: str | None = None,
    timestamp: float | None = None,
    query: str | None = None,
) -> httpx.Response:
    """POST ``body`` to the gateway's route as Replicate would, signed with the emulator's
    secret (or ``secret``), naming the body's own marker in the URL (or ``query``)."""
    raw = json.dumps(body).encode()
    headers = signed_headers(
        secret or emulator_of(app).config.webhook_secret,
        webhook_id,
        raw,
        timestamp=int(time.time() if timestamp is None else timestamp),
    )
    url = f"{app.http_url}{PATH}?{query if query is not None else body['webhook'].split('?')[1]}"
    async with httpx.AsyncClient() as http:
        return await http.post(url, content=raw, headers=headers)


async def test_a_job_completes_by_its_webhook_long_before_the_fallback_poll(
    hooked: tuple[Embedded, Stub],
) -> None:
    app, stub = hooked
    started = time.monotonic()
    job = (await stub.GenerateMedia(small_request("woken by webhook", latency_s=0.5))).job

    events = await watch(stub, job.id)

    assert events[-1].job.status == job_pb2.JOB_STATE_SUCCEEDED
    assert time.monotonic() - started < 5.0  # the first poll would have come after 24-36 s
    assert len(events[-1].job.media) == 1
    # The create, then one read of the prediction the webhook said had ended.
    assert gets(app) == 1
    assert emulator_of(app).stats_json()["webhooks"] == {"delivered": 1}


async def test_forged_stale_and_misdirected_webhooks_change_nothing(
    hooked: tuple[Embedded, Stub],
) -> None:
    app, stub = hooked
    done = (await stub.GenerateMedia(small_request("finished first", latency_s=0.2))).job
    assert (await watch(stub, done.id))[-1].job.status == job_pb2.JOB_STATE_SUCCEEDED
    finished = emulator_of(app).render(await prediction_of(app, done.id), app.emulator.base_url)
    running = (await stub.GenerateMedia(small_request("still running", latency_s=2.5))).job
    own = await prediction_of(app, running.id)
    own_hook = own.webhook
    assert own_hook is not None
    reads_before = gets(app)
    refused_before = webhook_count("refused")

    # The finished prediction's body, claiming to be the running job's: forged, stale, sent to
    # another URL than its body names, and malformed.
    claimed = {**finished, "id": own.id, "webhook": own_hook}
    forged = await post_webhook(app, claimed, secret="whsec_Zm9yZ2VkLWtleS1ieS1hbi1hdHRhY2tlcg==")
    stale = await post_webhook(app, claimed, timestamp=time.time() - 600)
    elsewhere = await post_webhook(app, finished, query=own_hook.split("?")[1])
    async with httpx.AsyncClient() as http:
        unsigned = await http.post(f"{app.http_url}{PATH}", content=json.dumps(claimed))

    assert (forged.status_code, stale.status_code) == (401, 401)
    assert "signature" in forged.json()["message"] and "timestamp" in stale.json()["message"]
    assert (elsewhere.status_code, unsigned.status_code) == (400, 400)
    assert webhook_count("refused") - refused_before == 4

    # Genuinely signed, but about the finished job's prediction while naming the running
    # job's marker: accepted, and ignored by that job's worker (not its prediction).
    misdirected = await post_webhook(app, {**finished, "webhook": own_hook}, webhook_id="msg_x")
    assert misdirected.status_code == 200

    got = (await stub.GetJob(pb.GetJobRequest(id=running.id))).job
    assert got.status == job_pb2.JOB_STATE_RUNNING and not got.media
    assert gets(app) == reads_before  # nobody polled early on any of them
    events = await watch(stub, running.id)
    assert events[-1].job.status == job_pb2.JOB_STATE_SUCCEEDED
    assert [m.sha256 for m in events[-1].job.media] != [
        m.sha256 for m in (await stub.GetJob(pb.GetJobRequest(id=done.id))).job.media
    ]
    assert (await stub.GetJob(pb.GetJobRequest(id=done.id))).job.status == (
        job_pb2.JOB_STATE_SUCCEEDED
    )


async def test_a_repeated_delivery_is_harmless(hooked: tuple[Embedded, Stub]) -> None:
    app, stub = hooked
    emulator_of(app).inject(Webhook(action=WebhookAction.DUPLICATE, match="said twice"))
    duplicates_before = webhook_count("duplicate")
    job = (await stub.GenerateMedia(small_request("said twice", latency_s=0.3))).job

    events = await watch(stub, job.id)
    await wait_until(
        lambda: _delivered(app), lambda delivered: delivered == 2
    )  # both copies reached the gateway
    # And once more after the job ended, as a new message (past the dedupe): still nothing.
    prediction = await prediction_of(app, job.id)
    body = emulator_of(app).render(prediction, app.emulator.base_url)
    late = await post_webhook(app, body, webhook_id="msg_late")

    assert late.status_code == 200 and late.json() == {"status": "accepted"}
    assert webhook_count("duplicate") - duplicates_before == 1
    finals = [e for e in events if e.job.status == job_pb2.JOB_STATE_SUCCEEDED]
    assert len(finals) == 1 and len(finals[0].job.media) == 1
    after = await watch(stub, job.id)
    assert [e.sequence for e in after] == [e.sequence for e in events]
    assert len(emulator_of(app).predictions) == 1


async def _delivered(app: Embedded) -> int:
    return int(emulator_of(app).stats_json()["webhooks"].get("delivered", 0))


async def test_while_the_secret_cannot_be_fetched_webhooks_get_503_and_come_again(
    hooked: tuple[Embedded, Stub],
) -> None:
    app, stub = hooked
    # 500, not 503: the replicate client itself retries a GET that gets 503.
    emulator_of(app).inject(ServerError(route=Route.SECRET, status=500))
    unavailable_before = answered(503)
    job = (await stub.GenerateMedia(small_request("secret unavailable", latency_s=0.2))).job
    await wait_until(lambda: _failed(app), lambda failed: failed >= 1)
    assert answered(503) - unavailable_before >= 1  # so Replicate retries, as it did here
    assert (await stub.GetJob(pb.GetJobRequest(id=job.id))).job.status == (
        job_pb2.JOB_STATE_RUNNING
    )

    emulator_of(app).clear_faults()  # Replicate is back: the next retry (1 s later) gets in
    events = await watch(stub, job.id)

    assert events[-1].job.status == job_pb2.JOB_STATE_SUCCEEDED
    assert emulator_of(app).stats_json()["webhooks"] == {"failed": 1, "delivered": 1}


async def test_an_oversized_webhook_is_refused_unread(hooked: tuple[Embedded, Stub]) -> None:
    app, _ = hooked
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{app.http_url}{PATH}?job=j&attempt=1", content=b"x" * (4 * 1024 * 1024 + 1)
        )
    assert response.status_code == 413


async def _failed(app: Embedded) -> int:
    return int(emulator_of(app).stats_json()["webhooks"].get("failed", 0))


async def test_polling_takes_over_when_the_webhook_never_comes(
    polled: tuple[Embedded, Stub],
) -> None:
    app, stub = polled
    emulator_of(app).inject(Webhook(action=WebhookAction.DROP))
    job = (await stub.GenerateMedia(small_request("never called back", latency_s=0.3))).job

    events = await watch(stub, job.id)

    assert events[-1].job.status == job_pb2.JOB_STATE_SUCCEEDED
    assert emulator_of(app).stats_json()["webhooks"] == {"dropped": 1}
    assert gets(app) >= 1
