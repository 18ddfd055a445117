"""Completion by webhook across OS processes: the emulator calls the gateway process, whose
settled notice reaches the worker process through Redis (real PostgreSQL, Redis and an S3
server). Polling is the 30 s fallback here, so a job done within seconds was woken."""

from __future__ import annotations

import signal
import time

import grpc
import httpx

from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.emulator import small_request
from tests.fixtures.processes import (
    Cluster,
    distributed_env,
    free_port,
    wait_for_grpc_health,
    wait_for_http,
)
from tests.fixtures.s3 import make_s3_settings


async def test_a_worker_process_is_woken_by_a_webhook_at_a_gateway_process(
    cluster: Cluster, postgres_url: str, s3_server: str
) -> None:
    from tests.fixtures.database import _truncate

    await _truncate(postgres_url)
    emulator_port, api_port, http_port = free_port(), free_port(), free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    cluster.env |= distributed_env(
        database_url=postgres_url,
        redis_url="redis://127.0.0.1:6379/0",
        s3_url=s3_server,
        bucket=make_s3_settings(s3_server).bucket,
        emulator_port=emulator_port,
        token="r8_webhooks_distributed",
    ) | {
        "MEDIAGEN_WEBHOOK_URL": f"http://127.0.0.1:{http_port}/webhooks/replicate",
        "MEDIAGEN_WEBHOOK_FALLBACK_POLL_S": "30",
        "MEDIAGEN_SHUTDOWN_GRACE_S": "1",
    }
    emulator = cluster.start("emulator", "emulator")
    api = cluster.start("api", "api", env={"MEDIAGEN_GRPC_PORT": str(api_port)})
    gateway = cluster.start(
        "gateway", "gateway", "--grpc-target", f"127.0.0.1:{api_port}",
        env={"MEDIAGEN_HTTP_PORT": str(http_port)},
    )  # fmt: skip
    worker_health = free_port()
    worker = cluster.start(
        "worker", "worker", env={"MEDIAGEN_WORKER_HEALTH_PORT": str(worker_health)}
    )
    wait_for_http(f"{emulator_url}/_emulator/health", emulator)
    wait_for_grpc_health(f"127.0.0.1:{api_port}", api)
    wait_for_http(f"http://127.0.0.1:{http_port}/api/v1/health", gateway)
    wait_for_grpc_health(f"127.0.0.1:{worker_health}", worker)

    try:
        await _complete_one(emulator_url, api_port)
    finally:
        # All at once: the fixture would stop them one by one, each with its grace period.
        for proc in cluster.procs:
            proc.popen.send_signal(signal.SIGTERM)


async def _complete_one(emulator_url: str, api_port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{api_port}") as channel:
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
