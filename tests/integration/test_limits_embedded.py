"""Per-tenant limits on the embedded service, over real gRPC and through the HTTP gateway: the
rate limit, the active-job quota and the WatchJob stream limit, and idempotent retries."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mediagen.embedded import Embedded
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.api_keys import tenant_keys
from tests.fixtures.embedded import embedded_settings

Stub = pb_grpc.MediaGenerationServiceStub
Start = Callable[..., Awaitable[tuple[Embedded, Stub]]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Start the embedded service with some limits; yields it and a gRPC stub."""
    apps: list[Embedded] = []
    channels: list[grpc.aio.Channel] = []

    async def start(data_dir: Path | None = None, **limits: object) -> tuple[Embedded, Stub]:
        data_dir = data_dir or tmp_path / f"data{len(apps)}"
        app = Embedded(embedded_settings(data_dir, **limits))
        await app.start()
        apps.append(app)
        channel = grpc.aio.insecure_channel(app.grpc_target)
        channels.append(channel)
        return app, pb_grpc.MediaGenerationServiceStub(channel)

    yield start
    for channel in channels:
        await channel.close()
    for app in apps:
        await app.stop()


def request(
    prompt: str, *, request_id: str = "", latency_s: float = 0.2
) -> pb.GenerateMediaRequest:
    extra = struct_pb2.Struct()
    extra.update({"emulator_latency_s": latency_s})
    return pb.GenerateMediaRequest(
        prompt=prompt,
        request_id=request_id,
        parameters=job_pb2.GenerationParameters(width=64, height=64, extra_input=extra),
    )


def quota_details(error: grpc.aio.AioRpcError) -> tuple[str, float, str]:
    """(ErrorInfo reason, RetryInfo delay in seconds, QuotaFailure subject) of a refusal."""
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error
    status = rpc_status.from_call(error)
    assert status is not None
    info, retry, quota = (
        error_details_pb2.ErrorInfo(),
        error_details_pb2.RetryInfo(),
        error_details_pb2.QuotaFailure(),
    )
    for detail in status.details:
        for message in (info, retry, quota):
            if detail.Is(message.DESCRIPTOR):
                detail.Unpack(message)
    assert quota.violations, "no QuotaFailure detail"
    return info.reason, retry.retry_delay.ToMilliseconds() / 1000, quota.violations[0].subject


def http_url(app: Embedded, path: str) -> str:
    return f"http://{app.settings.host}:{app.http_port}{path}"


async def test_rate_limit_over_grpc_and_http_and_idempotent_retries(start: Start) -> None:
    # Burst 3, then one call per 100 s: nothing refills during the test.
    app, stub = await start(rate_limit_per_s=0.01, rate_limit_burst=3)
    rid = str(uuid.uuid4())
    first = (await stub.GenerateMedia(request("one", request_id=rid))).job
    await stub.GenerateMedia(request("two"))
    async with httpx.AsyncClient(timeout=30) as http:
        body = {"prompt": "three", "parameters": {"width": 64, "height": 64}}
        third = await http.post(http_url(app, "/api/v1/jobs/generate"), json=body)
        assert third.status_code == 200, third.text

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GenerateMedia(request("four"))
        reason, delay_s, subject = quota_details(refused.value)
        assert (reason, subject) == ("RATE_LIMITED", "tenant:default")
        assert 99 < delay_s <= 100  # one token at 0.01/s

        over_http = await http.post(http_url(app, "/api/v1/jobs/generate"), json=body)
        assert over_http.status_code == 429
        assert over_http.headers["retry-after"] == "100"
        assert over_http.json()["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]

        # Retrying a submission that was accepted is answered, not refused.
        again = (await stub.GenerateMedia(request("one", request_id=rid))).job
        assert again.id == first.id
        over_http = await http.post(
            http_url(app, "/api/v1/jobs/generate"), json={"prompt": "one", "requestId": rid}
        )
        assert over_http.status_code == 200 and over_http.json()["id"] == first.id
        # A new request_id is a new submission, and is refused.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GenerateMedia(request("five", request_id=str(uuid.uuid4())))
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    listed = await stub.ListJobs(pb.ListJobsRequest())
    assert listed.total_size == 3


async def wait_until_done(stub: Stub, job_id: str) -> job_pb2.Job:
    last = None
    async for response in stub.WatchJob(pb.WatchJobRequest(id=job_id), timeout=30):
        last = response.event.job
    assert last is not None
    return last


async def test_active_job_quota(start: Start) -> None:
    app, stub = await start(max_active_jobs=2)
    slow = [(await stub.GenerateMedia(request(f"slow {i}", latency_s=30))).job for i in range(2)]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GenerateMedia(request("one too many"))
    reason, delay_s, subject = quota_details(refused.value)
    assert (reason, subject) == ("TOO_MANY_ACTIVE_JOBS", "tenant:default")
    assert 1 <= delay_s <= 60
    async with httpx.AsyncClient(timeout=30) as http:
        over_http = await http.post(
            http_url(app, "/api/v1/jobs/generate"), json={"prompt": "one too many"}
        )
    assert over_http.status_code == 429
    assert 1 <= int(over_http.headers["retry-after"]) <= 60

    # A finished job frees its slot.
    await stub.CancelJob(pb.CancelJobRequest(id=slow[0].id))
    assert (await wait_until_done(stub, slow[0].id)).status == job_pb2.JOB_STATE_CANCELED
    quick = (await stub.GenerateMedia(request("fits now"))).job
    assert (await wait_until_done(stub, quick.id)).status == job_pb2.JOB_STATE_SUCCEEDED
    await stub.CancelJob(pb.CancelJobRequest(id=slow[1].id))


async def test_watch_stream_limit(start: Start) -> None:
    app, stub = await start(max_watch_streams=2)
    job = (await stub.GenerateMedia(request("watched", latency_s=30))).job
    calls = [stub.WatchJob(pb.WatchJobRequest(id=job.id)) for _ in range(2)]
    for call in calls:
        await call.read()  # the snapshot: the stream is open and holds its slot
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await anext(aiter(stub.WatchJob(pb.WatchJobRequest(id=job.id))))
    reason, delay_s, subject = quota_details(refused.value)
    assert (reason, subject) == ("TOO_MANY_WATCH_STREAMS", "tenant:default")
    assert delay_s > 0
    async with httpx.AsyncClient(timeout=30) as http:
        over_http = await http.get(http_url(app, f"/api/v1/jobs/{job.id}:watch"))
    assert over_http.status_code == 429 and "retry-after" in over_http.headers

    # A client that goes away gives its slot back.
    calls[0].cancel()
    deadline = time.monotonic() + 10
    while True:
        call = stub.WatchJob(pb.WatchJobRequest(id=job.id))
        try:
            first = await call.read()
            assert isinstance(first, pb.WatchJobResponse) and first.event.job.id == job.id
            break
        except grpc.aio.AioRpcError as error:
            assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() < deadline, "the cancelled stream kept its slot"
            await asyncio.sleep(0.05)
    call.cancel()
    calls[1].cancel()
    await stub.CancelJob(pb.CancelJobRequest(id=job.id))


async def test_one_tenant_at_its_limits_does_not_limit_another(
    start: Start, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data0"  # where `start` puts the first service
    data_dir.mkdir()
    keys = await tenant_keys(f"sqlite+aiosqlite:///{data_dir / 'mediagen.db'}", "acme", "globex")
    app, stub = await start(
        rate_limit_per_s=0.01, rate_limit_burst=2, max_watch_streams=1, auth_cache_s=0.0
    )
    acme, globex = keys["acme"], keys["globex"]

    slow = [
        (await stub.GenerateMedia(request(f"acme {i}", latency_s=30), metadata=acme)).job
        for i in range(2)
    ]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GenerateMedia(request("acme 3"), metadata=acme)
    assert quota_details(refused.value)[::2] == ("RATE_LIMITED", "tenant:acme")
    theirs = (await stub.GenerateMedia(request("globex 1", latency_s=30), metadata=globex)).job

    # acme's one stream is open; globex may still watch.
    acme_stream = stub.WatchJob(pb.WatchJobRequest(id=slow[0].id), metadata=acme)
    await acme_stream.read()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await anext(aiter(stub.WatchJob(pb.WatchJobRequest(id=slow[1].id), metadata=acme)))
    assert quota_details(refused.value)[::2] == ("TOO_MANY_WATCH_STREAMS", "tenant:acme")
    globex_stream = stub.WatchJob(pb.WatchJobRequest(id=theirs.id), metadata=globex)
    first = await globex_stream.read()
    assert isinstance(first, pb.WatchJobResponse) and first.event.job.id == theirs.id

    # The same over HTTP, with the same keys.
    async with httpx.AsyncClient(timeout=30) as http:
        url = http_url(app, "/api/v1/jobs/generate")
        body = {"prompt": "over http"}
        refused_http = await http.post(url, json=body, headers=dict(acme))
        accepted_http = await http.post(url, json=body, headers=dict(globex))
    assert refused_http.status_code == 429 and int(refused_http.headers["retry-after"]) > 0
    assert accepted_http.status_code == 200, accepted_http.text
    for call in (acme_stream, globex_stream):
        call.cancel()
    for job, metadata in ((slow[0], acme), (slow[1], acme), (theirs, globex)):
        await stub.CancelJob(pb.CancelJobRequest(id=job.id), metadata=metadata)
