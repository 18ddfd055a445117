"""Issue 9: metrics from real processes — `mediagen api`, `mediagen worker` and `mediagen
gateway` as OS processes on PostgreSQL, Redis, S3 (moto) and the emulator — each scraped on its
own port after a scripted run (success, failure, a throttled create, a retried one, a cancel)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import pytest

from mediagen.config import DEFAULT_MODEL, S3Settings
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.emulator import small_request, wait_until
from tests.fixtures.processes import Cluster, free_port
from tests.support.metrics import Delta, Scrape, scrape

GENERATE = "/mediagen.v1.MediaGenerationService/GenerateMedia"


@dataclass
class Deployment:
    api: str
    api_metrics: str
    worker_metrics: str
    gateway: str
    emulator: str


@pytest.fixture
def deployment(
    cluster: Cluster, postgres_url: str, s3_settings: S3Settings
) -> Iterator[Deployment]:
    emulator_url = cluster.distributed(postgres_url, s3_settings, token="r8_metrics_test_token")
    cluster.env |= {
        "MEDIAGEN_EMULATOR_LATENCY_S": "0.5",
        "MEDIAGEN_POLL_INTERVAL_S": "0.1",
        "MEDIAGEN_POLL_INTERVAL_MAX_S": "0.2",
        "MEDIAGEN_RETRY_BASE_S": "0.2",
        "MEDIAGEN_RETRY_MAX_S": "1",
        "MEDIAGEN_SHUTDOWN_GRACE_S": "1",
        "MEDIAGEN_METRICS_QUERY_INTERVAL_S": "0",
        "MEDIAGEN_DB_POOL_SIZE": "3",
        "MEDIAGEN_DB_MAX_OVERFLOW": "2",
    }
    api_metrics, worker_metrics = free_port(), free_port()
    emulator = cluster.emulator()
    api = cluster.api(env={"MEDIAGEN_METRICS_PORT": str(api_metrics)})
    worker = cluster.worker(env={"MEDIAGEN_METRICS_PORT": str(worker_metrics)})
    gateway = cluster.gateway(api.address)
    for server in (emulator, api, worker, gateway):
        server.ready()
    yield Deployment(
        api=api.address,
        api_metrics=f"http://127.0.0.1:{api_metrics}/metrics",
        worker_metrics=f"http://127.0.0.1:{worker_metrics}/metrics",
        gateway=gateway.address,
        emulator=emulator_url,
    )


async def _final(stub: pb_grpc.MediaGenerationServiceStub, job_id: str) -> job_pb2.Job:
    last = None
    async for response in stub.WatchJob(pb.WatchJobRequest(id=job_id), timeout=60):
        last = response.event.job
    assert last is not None
    return last


async def _scrape_all(d: Deployment) -> tuple[Scrape, Scrape, Scrape]:
    return (
        await scrape(d.api_metrics),
        await scrape(d.worker_metrics),
        await scrape(f"{d.gateway}/metrics"),
    )


async def test_each_process_reports_its_own_part_of_a_run(deployment: Deployment) -> None:
    async with httpx.AsyncClient() as http:
        armed = await http.post(
            f"{deployment.emulator}/_emulator/faults",
            json=[
                {"kind": "outcome", "status": "failed", "error": "NSFW", "match": "doomed"},
                {"kind": "throttle", "route": "create", "retry_after_s": 1, "match": "throttled"},
                {"kind": "error", "route": "create", "status": 503, "match": "unanswered"},
            ],
        )
        assert armed.status_code == 201, armed.text
    api0, worker0, gateway0 = await _scrape_all(deployment)
    assert api0.value("mediagen_process_info", role="api") == 1
    assert worker0.value("mediagen_process_info", role="worker") == 1
    assert gateway0.value("mediagen_process_info", role="gateway") == 1

    async with grpc.aio.insecure_channel(deployment.api) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        finals = []
        for prompt in ("a fine owl", "a doomed owl", "a throttled owl", "an unanswered owl"):
            job = (await stub.GenerateMedia(small_request(prompt), timeout=10)).job
            finals.append(await _final(stub, job.id))
        slow = (await stub.GenerateMedia(small_request("a slow owl", latency_s=30), timeout=10)).job

        async def status() -> int:
            return (await stub.GetJob(pb.GetJobRequest(id=slow.id))).job.status

        await wait_until(status, lambda s: s == job_pb2.JOB_STATE_RUNNING, timeout_s=20)
        api_during = await scrape(deployment.api_metrics)
        worker_during = await scrape(deployment.worker_metrics)
        await stub.CancelJob(pb.CancelJobRequest(id=slow.id))
        finals.append(await _final(stub, slow.id))

    async with httpx.AsyncClient(base_url=deployment.gateway) as http:
        assert (await http.get(f"/api/v1/jobs/status/{slow.id}")).status_code == 200
        assert (await http.get("/api/v1/jobs/status/no-such-job")).status_code == 404

    assert [job_pb2.JobState.Name(j.status) for j in finals] == [
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_FAILED",
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_CANCELED",
    ]
    stored = sum(m.size_bytes for j in finals for m in j.media)
    api1, worker1, gateway1 = await _scrape_all(deployment)
    api, worker, gateway = Delta(api0, api1), Delta(worker0, worker1), Delta(gateway0, gateway1)
    model = DEFAULT_MODEL

    # The API process: submissions and calls; its gauges come from the database.
    assert api("mediagen_jobs_submitted_total", model=model) == 5
    assert api("mediagen_grpc_requests_total", method=GENERATE, code="OK") == 5
    assert api_during.value("mediagen_jobs", state="running") == 1
    assert api1.value("mediagen_jobs", state="running") == 0
    assert api1.value("mediagen_jobs", state="pending") == 0
    assert api1.value("mediagen_queue_depth") == 0
    assert api1.value("mediagen_worker_concurrency") == 0  # not a worker

    # The worker process: outcomes, retries, provider calls and storage.
    assert worker("mediagen_jobs_finished_total", state="succeeded", model=model) == 3
    assert worker("mediagen_jobs_finished_total", state="failed", model=model) == 1
    assert worker("mediagen_jobs_finished_total", state="canceled", model=model) == 1
    # A 429 is waited out within its attempt (the shared pause); an unanswered create retries.
    assert worker("mediagen_job_retries_total", reason="throttled") == 0
    assert worker("mediagen_job_retries_total", reason="provider") == 1
    assert worker("mediagen_provider_throttled_total", operation="create") == 1
    assert worker("mediagen_job_retries_total") == 1
    assert worker("mediagen_job_queued_seconds_count", model=model) == 5
    assert worker("mediagen_job_running_seconds_count", model=model) == 6
    assert worker("mediagen_provider_requests_total", operation="create", outcome="ok") == 5
    assert worker("mediagen_provider_requests_total", operation="create", outcome="transient") == 1
    assert worker("mediagen_provider_requests_total", operation="create", outcome="ambiguous") == 1
    assert worker("mediagen_ambiguous_creates_total") == 1
    assert worker("mediagen_prediction_recoveries_total", outcome="none") == 1
    assert worker("mediagen_storage_bytes_total") == stored > 0
    assert worker_during.value("mediagen_worker_jobs_in_flight") == 1
    assert worker1.value("mediagen_worker_jobs_in_flight") == 0
    assert worker("mediagen_jobs_submitted_total") == 0  # the API's, not the worker's

    # The gateway process: its HTTP requests by route template.
    route = "/api/v1/jobs/status/{id}"
    assert gateway("mediagen_http_requests_total", route=route, status="200") == 1
    assert gateway("mediagen_http_requests_total", route=route, status="404") == 1
    assert gateway("mediagen_http_request_duration_seconds_count", route=route) == 2
