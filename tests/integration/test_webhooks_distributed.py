"""Completion by webhook across OS processes: the emulator calls the gateway process, whose
settled notice reaches the worker process through Redis (real PostgreSQL, Redis and an S3
server). Polling is the 30 s fallback here, so a job done within seconds was woken."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest

from mediagen.config import S3Settings
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.emulator import small_request
from tests.fixtures.processes import Cluster


@pytest.fixture
def deployment(
    cluster: Cluster, postgres_url: str, s3_settings: S3Settings
) -> Iterator[tuple[str, str]]:
    """The emulator's URL and the API's target."""
    emulator_url = cluster.distributed(postgres_url, s3_settings, token="r8_webhooks_distributed")
    cluster.env["MEDIAGEN_SHUTDOWN_GRACE_S"] = "1"
    emulator, api = cluster.emulator(), cluster.api()
    gateway = cluster.gateway(api.address)
    worker = cluster.worker(
        env={
            "MEDIAGEN_WEBHOOK_URL": f"{gateway.address}/webhooks/replicate",
            "MEDIAGEN_WEBHOOK_FALLBACK_POLL_S": "30",
        }
    )
    for server in (emulator, api, gateway, worker):
        server.ready()
    try:
        yield emulator_url, api.address
    finally:
        # All at once: the fixture would stop them one by one, each with its grace period.
        for proc in cluster.procs:
            proc.popen.send_signal(signal.SIGTERM)


async def test_a_worker_process_is_woken_by_a_webhook_at_a_gateway_process(
    deployment: tuple[str, str],
) -> None:
    emulator_url, api = deployment
    async with grpc.aio.insecure_channel(api) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        started = time.monotonic()
        job = (await stub.GenerateMedia(small_request("across processes", 0.5), timeout=30)).job
        call = stub.WatchJob(pb.WatchJobRequest(id=job.id), timeout=20)
        events = [response.event async for response in call]
        elapsed = time.monotonic() - started

    assert events[-1].job.status == job_pb2.JOB_STATE_SUCCEEDED
    assert len(events[-1].job.media) == 1
    assert elapsed < 8.0  # the fallback poll would have come after 24-36 s
    async with httpx.AsyncClient() as http:
        stats = (await http.get(f"{emulator_url}/_emulator/stats")).json()
    assert stats["webhooks"] == {"delivered": 1}
    assert stats["requests"]["get"] == 1  # the one read the webhook asked for
    assert stats["requests"]["secret"] == 1  # fetched once by the gateway, then cached
