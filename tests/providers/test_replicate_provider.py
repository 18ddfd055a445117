"""ReplicateProvider against the emulator: results, and every fault as a ProviderError."""

from __future__ import annotations

import asyncio
import io
import socket
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from PIL import Image

from mediagen.emulator import Delay, Drop, Outcome, Route, RunningEmulator, ServerError, Throttle
from mediagen.providers.base import Prediction, PredictionStatus, ProviderError
from mediagen.providers.marker import Marker
from mediagen.providers.replicate import ReplicateProvider
from tests.fixtures.emulator import EmulatorFactory, wait_until

SDXL = "stability-ai/sdxl"
VERSION = "c" * 64
INPUT = {"prompt": "a lighthouse at dusk", "width": 48, "height": 32}
#: Nothing listens there, and the emulator delivers no webhooks: the URL is only a marker.
WEBHOOKS = "http://127.0.0.1:9/webhooks/replicate"
JOB_A = "0b9d8a1e-5f0c-4d3e-9a51-2f6a7f6f0a01"
JOB_B = "7c1e3b52-91d4-4f1b-8c2a-6e0d5b9c4f02"


def window(seconds: float = 60) -> dict[str, datetime]:
    now = datetime.now(UTC)
    return {
        "created_after": now - timedelta(seconds=5),
        "created_before": now + timedelta(seconds=seconds),
    }


@pytest_asyncio.fixture
async def provider(emulator: RunningEmulator) -> AsyncIterator[ReplicateProvider]:
    replicate = ReplicateProvider(
        api_token="r8_test",
        base_url=emulator.base_url,
        output_hosts=(emulator.host_port,),
        webhook_url=WEBHOOKS,
    )
    yield replicate
    await replicate.close()


async def finished(provider: ReplicateProvider, prediction_id: str) -> Prediction:
    return await wait_until(lambda: provider.get(prediction_id), lambda p: p.status.terminal)


async def download(provider: ReplicateProvider, url: str) -> bytes:
    return b"".join([chunk async for chunk in provider.download(url)])


async def failure(call: object) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_happy_path(provider: ReplicateProvider) -> None:
    created = await provider.create(SDXL, INPUT)
    assert created.status is PredictionStatus.STARTING

    done = await finished(provider, created.id)

    assert done.status is PredictionStatus.SUCCEEDED
    assert done.predict_time_s is not None and done.predict_time_s > 0
    assert "100%|██████████| 10/10" in done.logs
    (url,) = done.output_urls
    image = Image.open(io.BytesIO(await download(provider, url)))
    assert (image.format, image.size) == ("PNG", (48, 32))


async def test_version_reference_keeps_model_and_version(
    provider: ReplicateProvider, emulator: RunningEmulator
) -> None:
    await provider.create(f"{SDXL}:{VERSION}", INPUT)
    (seen,) = emulator.emulator.predictions
    assert (seen.target.model, seen.target.version) == (SDXL, VERSION)


async def test_bad_reference_is_permanent_and_sends_nothing(
    provider: ReplicateProvider, emulator: RunningEmulator
) -> None:
    error = await failure(provider.create("not-a-model", INPUT))
    assert not error.transient
    assert emulator.emulator.stats_json()["requests"]["create"] == 0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_on_create_is_transient_and_ambiguous(
    provider: ReplicateProvider, emulator: RunningEmulator, status: int
) -> None:
    # Refused before anything was made: the caller cannot tell, so it must look before creating.
    emulator.emulator.inject(ServerError(route=Route.CREATE, status=status))
    marker = Marker(JOB_A, 1)
    error = await failure(provider.create(SDXL, INPUT, marker=marker))
    assert (error.transient, error.ambiguous, error.retry_after_s) == (True, True, None)
    assert str(status) in str(error)
    assert await provider.find_marked(marker, **window()) == []


@pytest.mark.parametrize(
    "fault",
    [
        ServerError(route=Route.CREATE, status=502, after=True),
        Drop(route=Route.CREATE, after=True),
    ],
    ids=["502-after-create", "drop-after-create"],
)
async def test_create_that_took_effect_without_an_answer_is_found_by_its_marker(
    provider: ReplicateProvider, emulator: RunningEmulator, fault: ServerError | Drop
) -> None:
    emulator.emulator.inject(fault)
    marker = Marker(JOB_A, 3)

    error = await failure(provider.create(SDXL, INPUT, marker=marker))
    found = await provider.find_marked(marker, **window())

    assert (error.transient, error.ambiguous) == (True, True)
    (made,) = emulator.emulator.predictions
    assert [p.id for p in found] == [made.id]
    assert made.webhook == f"{WEBHOOKS}?job={JOB_A}&attempt=3"
    assert made.webhook_events_filter == ["completed"]


@pytest.mark.parametrize("header", [True, False])
async def test_429_is_transient_with_the_retry_hint(
    provider: ReplicateProvider, emulator: RunningEmulator, header: bool
) -> None:
    # With the header the hint comes from it (via the response hook); without, from the body.
    emulator.emulator.inject(Throttle(route=Route.CREATE, retry_after_s=7, header=header))
    error = await failure(provider.create(SDXL, INPUT))
    assert (error.transient, error.ambiguous, error.retry_after_s) == (True, False, 7.0)


@pytest.mark.parametrize("header", [True, False])
async def test_429_on_get_comes_back_at_once_not_after_the_clients_own_retries(
    provider: ReplicateProvider, emulator: RunningEmulator, header: bool
) -> None:
    """1.0.7 would resend the GET nine times, waiting what Retry-After says, past any shared
    pause; the provider hands the first 429 back with its hint instead."""
    created = await provider.create(SDXL, INPUT)
    emulator.emulator.inject(Throttle(route=Route.GET, retry_after_s=3, header=header, times=None))

    error = await failure(provider.get(created.id))

    assert (error.transient, error.status, error.retry_after_s) == (True, 429, 3.0)
    assert "Request was throttled" in str(error)
    assert emulator.emulator.stats_json()["requests"]["get"] == 1


async def test_calls_beyond_the_pool_wait_for_a_connection_instead_of_failing(
    emulator: RunningEmulator,
) -> None:
    """40 polls at once over 4 connections, each held 0.1 s, with a 50 ms pool timeout: in
    httpx's pool most would fail with PoolTimeout; waiting for a slot, none does."""
    small = ReplicateProvider(
        api_token="r8_test", base_url=emulator.base_url, max_connections=4, pool_timeout_s=0.05
    )
    try:
        created = await small.create(SDXL, INPUT)
        emulator.emulator.inject(Delay(route=Route.GET, delay_s=0.1, times=None))
        polled = await asyncio.gather(*(small.get(created.id) for _ in range(40)))
    finally:
        await small.close()
    assert {p.id for p in polled} == {created.id}


@pytest.mark.parametrize(
    ("fault", "call"),
    [(ServerError(route=Route.GET, status=500), "get"), (Drop(route=Route.GET), "get")],
)
async def test_get_failures_are_transient(
    provider: ReplicateProvider, emulator: RunningEmulator, fault: ServerError | Drop, call: str
) -> None:
    created = await provider.create(SDXL, INPUT)
    emulator.emulator.inject(fault)
    error = await failure(provider.get(created.id))
    assert (error.transient, error.ambiguous) == (True, False)


async def test_4xx_are_permanent(
    provider: ReplicateProvider, emulator_factory: EmulatorFactory
) -> None:
    unknown = await failure(provider.get("nosuchprediction"))
    invalid = await failure(provider.create(SDXL, {"prompt": "x", "width": 1_000_000}))
    locked = await emulator_factory(api_token="r8_right")
    wrong_token = ReplicateProvider(api_token="r8_wrong", base_url=locked.base_url)
    unauthenticated = await failure(wrong_token.create(SDXL, INPUT))
    await wrong_token.close()

    assert [e.transient for e in (unknown, invalid, unauthenticated)] == [False, False, False]
    assert "404" in str(unknown) and "422" in str(invalid) and "401" in str(unauthenticated)


async def test_connect_error_is_transient_and_not_ambiguous() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = ReplicateProvider(api_token="t", base_url=f"http://127.0.0.1:{port}")
    error = await failure(nowhere.create(SDXL, INPUT))
    await nowhere.close()
    assert (error.transient, error.ambiguous) == (True, False)


async def test_dropped_create_is_ambiguous_and_nothing_carries_its_marker(
    provider: ReplicateProvider, emulator: RunningEmulator
) -> None:
    emulator.emulator.inject(Drop(route=Route.CREATE))  # dropped before it was handled
    marker = Marker(JOB_A, 1)

    error = await failure(provider.create(SDXL, INPUT, marker=marker))

    assert (error.transient, error.ambiguous) == (True, True)
    assert await provider.find_marked(marker, **window()) == []
    assert emulator.emulator.predictions == []


async def test_timed_out_create_is_ambiguous_and_found_by_its_marker(
    emulator: RunningEmulator,
) -> None:
    # 1.0.7 sends creates without any timeout; the provider's own deadline (0.1 + 0.2 s) ends it.
    impatient = ReplicateProvider(
        api_token="t",
        base_url=emulator.base_url,
        connect_timeout_s=0.1,
        read_timeout_s=0.2,
        webhook_url=WEBHOOKS,
    )
    emulator.emulator.inject(Delay(route=Route.CREATE, delay_s=0.5, after=True))
    marker = Marker(JOB_A, 1)

    error = await failure(impatient.create(SDXL, INPUT, marker=marker))
    found = await impatient.find_marked(marker, **window())
    await impatient.close()

    assert (error.transient, error.ambiguous) == (True, True)
    (made,) = emulator.emulator.predictions
    assert [p.id for p in found] == [made.id]


async def test_find_marked_tells_jobs_with_identical_inputs_apart(
    provider: ReplicateProvider,
) -> None:
    times = window()
    a1 = await provider.create(SDXL, INPUT, marker=Marker(JOB_A, 1))
    b1 = await provider.create(SDXL, INPUT, marker=Marker(JOB_B, 1))  # newer, same everything
    a2 = await provider.create(SDXL, INPUT, marker=Marker(JOB_A, 2))
    await provider.create(SDXL, INPUT)  # no marker at all

    assert [p.id for p in await provider.find_marked(Marker(JOB_A, 1), **times)] == [a1.id]
    assert [p.id for p in await provider.find_marked(Marker(JOB_B, 1), **times)] == [b1.id]
    assert [p.id for p in await provider.find_marked(Marker(JOB_A, 2), **times)] == [a2.id]
    assert await provider.find_marked(Marker(JOB_B, 2), **times) == []


async def test_find_marked_looks_only_between_its_times(provider: ReplicateProvider) -> None:
    marker = Marker(JOB_A, 1)
    await provider.create(SDXL, INPUT, marker=marker)
    now = datetime.now(UTC)

    later = {
        "created_after": now + timedelta(seconds=1),
        "created_before": now + timedelta(seconds=60),
    }
    earlier = {
        "created_after": now - timedelta(seconds=60),
        "created_before": now - timedelta(seconds=5),
    }

    assert await provider.find_marked(marker, **later) == []
    assert await provider.find_marked(marker, **earlier) == []
    assert len(await provider.find_marked(marker, **window())) == 1


async def test_find_marked_walks_pages(emulator_factory: EmulatorFactory) -> None:
    running = await emulator_factory(page_size=2)
    provider = ReplicateProvider(api_token="t", base_url=running.base_url, webhook_url=WEBHOOKS)
    times = window()
    wanted = await provider.create(SDXL, INPUT, marker=Marker(JOB_A, 1))
    for n in range(5):
        await provider.create(SDXL, INPUT, marker=Marker(JOB_B, n + 1))

    found = await provider.find_marked(Marker(JOB_A, 1), **times)
    await provider.close()

    assert [p.id for p in found] == [wanted.id]
    assert running.emulator.stats_json()["requests"]["list"] == 3  # 6 predictions, 2 a page


async def test_failed_list_is_a_transient_error(
    provider: ReplicateProvider, emulator: RunningEmulator
) -> None:
    emulator.emulator.inject(ServerError(route=Route.LIST, status=500))
    error = await failure(provider.find_marked(Marker(JOB_A, 1), **window()))
    assert (error.transient, error.ambiguous) == (True, False)


async def test_a_marker_needs_a_webhook_base(emulator: RunningEmulator) -> None:
    bare = ReplicateProvider(api_token="t", base_url=emulator.base_url)
    with pytest.raises(ValueError, match="webhook_url"):
        await bare.create(SDXL, INPUT, marker=Marker(JOB_A, 1))
    await bare.close()
    assert emulator.emulator.stats_json()["requests"]["create"] == 0


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (PredictionStatus.FAILED, "CUDA out of memory"),
        (PredictionStatus.CANCELED, None),
        (PredictionStatus.ABORTED, None),  # the 1.0.7 client cannot parse this one
    ],
)
async def test_unsuccessful_outcomes_are_terminal(
    provider: ReplicateProvider,
    emulator: RunningEmulator,
    status: PredictionStatus,
    error: str | None,
) -> None:
    emulator.emulator.inject(Outcome(status=status, error="CUDA out of memory"))
    created = await provider.create(SDXL, INPUT)

    done = await finished(provider, created.id)

    assert (done.status, done.error, done.output_urls) == (status, error, ())


async def test_cancel(provider: ReplicateProvider) -> None:
    created = await provider.create(SDXL, {**INPUT, "emulator_latency_s": 5})
    canceled = await provider.cancel(created.id)
    assert canceled.status is PredictionStatus.CANCELED


async def test_cancel_of_an_aborted_prediction_reads_it_raw(
    provider: ReplicateProvider, emulator: RunningEmulator
) -> None:
    emulator.emulator.inject(Outcome(status=PredictionStatus.ABORTED))
    created = await provider.create(SDXL, INPUT)
    await finished(provider, created.id)
    assert (await provider.cancel(created.id)).status is PredictionStatus.ABORTED


async def test_large_download_streams_in_chunks(provider: ReplicateProvider) -> None:
    size = 50 * 1024 * 1024
    created = await provider.create(SDXL, {**INPUT, "emulator_output_bytes": size})
    (url,) = (await finished(provider, created.id)).output_urls

    total = largest = 0
    tracemalloc.start()
    try:
        async for chunk in provider.download(url):
            total += len(chunk)
            largest = max(largest, len(chunk))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert total == size
    assert largest <= 1024 * 1024
    assert peak < 8 * 1024 * 1024  # client and emulator together: never the whole file


async def test_download_after_retention_is_permanent(emulator_factory: EmulatorFactory) -> None:
    running = await emulator_factory(retention_s=0.0)
    provider = ReplicateProvider(
        api_token="t", base_url=running.base_url, output_hosts=(running.host_port,)
    )
    created = await provider.create(SDXL, INPUT)
    await finished(provider, created.id)
    url = f"{running.base_url}/files/{created.id}/out-0.png"  # output is already null

    error = await failure(download(provider, url))
    await provider.close()

    assert not error.transient and "404" in str(error)


async def test_download_of_a_data_uri_decodes_it(provider: ReplicateProvider) -> None:
    assert await download(provider, "data:text/plain;base64,aGVsbG8=") == b"hello"


async def test_slow_get_is_transient_and_not_ambiguous(emulator: RunningEmulator) -> None:
    impatient = ReplicateProvider(api_token="t", base_url=emulator.base_url, read_timeout_s=0.2)
    created = await impatient.create(SDXL, INPUT)
    emulator.emulator.inject(Delay(route=Route.GET, delay_s=0.5))

    error = await failure(impatient.get(created.id))
    await impatient.close()

    assert (error.transient, error.ambiguous) == (True, False)
