"""Per-tenant limits across real `mediagen api` processes sharing PostgreSQL and Redis: one
rate bucket for all of them, and UNAVAILABLE (never a free pass) when Redis is gone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.api_keys import drop_keys, tenant_keys
from tests.fixtures.database import _truncate
from tests.fixtures.processes import Cluster
from tests.fixtures.redis_server import MACHINE_REDIS_URL, PrivateRedis

BURST = 6


def api_env(tmp_path: Path, postgres_url: str, redis_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "MEDIAGEN_DATA_DIR": str(tmp_path / "data"),
        "MEDIAGEN_RATE_LIMIT_PREFIX": f"mediagen-test:{uuid.uuid4().hex[:10]}:",
        # A burst, then one token per 1000 s: nothing refills during the test.
        "MEDIAGEN_RATE_LIMIT_PER_S": "0.001",
        "MEDIAGEN_RATE_LIMIT_BURST": str(BURST),
        "MEDIAGEN_SHUTDOWN_GRACE_S": "1",
        "MEDIAGEN_DB_POOL_SIZE": "2",
        "MEDIAGEN_DB_MAX_OVERFLOW": "2",
        "SECRET_KEY": "limits-test-secret",  # the distributed roles refuse to run without one
    }


def start_apis(cluster: Cluster, count: int) -> list[str]:
    apis = [cluster.api(f"api{i}") for i in range(count)]
    return [api.ready().address for api in apis]


Keys = dict[str, list[tuple[str, str]]]


@pytest.fixture
def two_apis(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> Iterator[tuple[list[str], Keys]]:
    """Two API processes enforcing API keys; keys of tenants acme and globex."""
    asyncio.run(_truncate(postgres_url))
    keys = asyncio.run(tenant_keys(postgres_url, "acme", "globex"))
    try:
        cluster.env |= api_env(tmp_path, postgres_url, MACHINE_REDIS_URL)
        yield start_apis(cluster, 2), keys
    finally:
        cluster.stop_all()
        asyncio.run(drop_keys(postgres_url))


def reason_of(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert any(detail.Unpack(info) for detail in status.details)
    return info.reason


def retry_delay_s(error: grpc.aio.AioRpcError) -> float:
    """The refusal's google.rpc.RetryInfo delay (it must carry one)."""
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(info) for detail in status.details), status
    return info.retry_delay.ToTimedelta().total_seconds()


async def test_one_rate_limit_across_two_api_processes(
    two_apis: tuple[list[str], Keys],
) -> None:
    targets, keys = two_apis
    acme, globex = keys["acme"], keys["globex"]
    channels = [grpc.aio.insecure_channel(target) for target in targets]
    stubs = [pb_grpc.MediaGenerationServiceStub(channel) for channel in channels]
    try:

        async def submit(i: int) -> str:
            try:
                reply = await stubs[i % 2].GenerateMedia(
                    pb.GenerateMediaRequest(prompt=f"burst {i}"), timeout=30, metadata=acme
                )
            except grpc.aio.AioRpcError as error:
                assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error
                return reason_of(error)
            return reply.job.id

        # Twice the burst at once, alternating between the processes.
        outcomes = await asyncio.gather(*(submit(i) for i in range(2 * BURST)))
        accepted = [o for o in outcomes if o != "RATE_LIMITED"]
        assert len(accepted) == BURST
        # Spent for both: the next call is refused whichever process it reaches.
        for stub in stubs:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GenerateMedia(
                    pb.GenerateMediaRequest(prompt="late"), timeout=30, metadata=acme
                )
            assert reason_of(refused.value) == "RATE_LIMITED"
            # One token per 1000 s: the wait the refusal suggests is the bucket's, not zero.
            assert retry_delay_s(refused.value) > 60
        listed = await stubs[0].ListJobs(pb.ListJobsRequest(), timeout=30, metadata=acme)
        assert sorted(job.id for job in listed.jobs) == sorted(accepted)

        # Another tenant has its own bucket, on both processes.
        for i in range(BURST):
            await stubs[i % 2].GenerateMedia(
                pb.GenerateMediaRequest(prompt=f"globex {i}"), timeout=30, metadata=globex
            )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stubs[0].GenerateMedia(
                pb.GenerateMediaRequest(prompt="globex late"), timeout=30, metadata=globex
            )
        assert reason_of(refused.value) == "RATE_LIMITED"
    finally:
        for channel in channels:
            await channel.close()


async def test_active_job_quota_across_two_api_processes_and_a_gateway(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    """MEDIAGEN_MAX_ACTIVE_JOBS holds across API processes (no worker runs, so jobs stay
    PENDING); the refusal carries RetryInfo, and through a gateway it is 429 + Retry-After."""
    await _truncate(postgres_url)
    keys = await tenant_keys(postgres_url, "acme", "globex")
    acme, globex = keys["acme"], keys["globex"]
    cluster.env |= api_env(tmp_path, postgres_url, MACHINE_REDIS_URL) | {
        "MEDIAGEN_RATE_LIMIT_PER_S": "0",
        "MEDIAGEN_MAX_ACTIVE_JOBS": "3",
    }
    channels: list[grpc.aio.Channel] = []
    try:
        targets = start_apis(cluster, 2)
        base = cluster.gateway(targets[1]).ready().address
        channels = [grpc.aio.insecure_channel(target) for target in targets]
        stubs = [pb_grpc.MediaGenerationServiceStub(channel) for channel in channels]
        for i in range(3):  # sequential: concurrent ones may overshoot (documented)
            await stubs[i % 2].GenerateMedia(
                pb.GenerateMediaRequest(prompt=f"active {i}"), timeout=30, metadata=acme
            )
        for stub in stubs:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GenerateMedia(
                    pb.GenerateMediaRequest(prompt="one too many"), timeout=30, metadata=acme
                )
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert reason_of(refused.value) == "TOO_MANY_ACTIVE_JOBS"
            assert 1 <= retry_delay_s(refused.value) <= 60
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            over = await http.post(
                "/api/v1/jobs/generate", json={"prompt": "over http"}, headers=dict(acme)
            )
            assert over.status_code == 429, over.text
            assert 1 <= int(over.headers["retry-after"]) <= 60
            assert over.json()["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            # Another tenant is not limited by acme's jobs.
            other = await http.post(
                "/api/v1/jobs/generate", json={"prompt": "globex"}, headers=dict(globex)
            )
            assert other.status_code == 200, other.text
    finally:
        for channel in channels:
            await channel.close()
        cluster.stop_all()
        await drop_keys(postgres_url)


async def test_redis_down_means_unavailable_not_unlimited(
    cluster: Cluster, postgres_url: str, tmp_path: Path, private_redis: PrivateRedis
) -> None:
    await _truncate(postgres_url)
    acme = (await tenant_keys(postgres_url, "acme"))["acme"]
    try:
        await redis_outage(cluster, tmp_path, postgres_url, private_redis, acme)
    finally:
        cluster.stop_all()
        await drop_keys(postgres_url)


async def redis_outage(
    cluster: Cluster,
    tmp_path: Path,
    postgres_url: str,
    private_redis: PrivateRedis,
    acme: list[tuple[str, str]],
) -> None:
    cluster.env |= api_env(tmp_path, postgres_url, private_redis.url)
    [target] = start_apis(cluster, 1)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        request = pb.GenerateMediaRequest(prompt="before")
        await stub.GenerateMedia(request, timeout=30, metadata=acme)
        private_redis.stop()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            request = pb.GenerateMediaRequest(prompt="during")
            await stub.GenerateMedia(request, timeout=30, metadata=acme)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "rate limit cannot be checked" in (refused.value.details() or "")
        status = rpc_status.from_call(refused.value)
        assert status is not None
        retry = error_details_pb2.RetryInfo()
        assert any(detail.Unpack(retry) for detail in status.details)
        assert retry.retry_delay.ToMilliseconds() > 0
        listed = await stub.ListJobs(pb.ListJobsRequest(), timeout=30, metadata=acme)
        assert [job.prompt for job in listed.jobs] == ["before"]

        private_redis.start()  # back (empty): submissions are admitted again
        request = pb.GenerateMediaRequest(prompt="after")
        reply = await stub.GenerateMedia(request, timeout=30, metadata=acme)
        assert reply.job.prompt == "after"
