"""Issue 9: the embedded service's /metrics after a scripted run — jobs that succeed, fail,
are throttled (the create waits out the pause and is sent again), retry (an unanswered create)
and are cancelled — moved by exactly the right amounts; scraped from the gateway and from the
process's own metrics port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from mediagen.config import DEFAULT_MODEL
from mediagen.embedded import Embedded
from mediagen.emulator.faults import Outcome, Route, ServerError, Throttle
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.embedded import embedded_settings
from tests.fixtures.emulator import small_request, wait_until
from tests.fixtures.s3 import free_port
from tests.support.metrics import Delta, scrape

GENERATE = "/mediagen.v1.MediaGenerationService/GenerateMedia"
WATCH = "/mediagen.v1.MediaGenerationService/WatchJob"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Embedded]:
    settings = embedded_settings(
        tmp_path / "data",
        metrics_port=free_port(),
        metrics_query_interval_s=0.0,  # every scrape reads the database
        ambiguous_settle_s=0.3,
    )
    app = Embedded(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def _watch(stub: pb_grpc.MediaGenerationServiceStub, job_id: str) -> tuple[job_pb2.Job, int]:
    """The job's final state and how many events the stream carried."""
    last = None
    count = 0
    async for response in stub.WatchJob(pb.WatchJobRequest(id=job_id), timeout=60):
        last = response.event.job
        count += 1
    assert last is not None
    return last, count


async def test_a_scripted_run_moves_every_metric_by_exactly_its_amount(service: Embedded) -> None:
    gateway_metrics = f"{service.http_url}/metrics"
    own_metrics = f"http://127.0.0.1:{service.metrics.port}/metrics"
    emulator = service.emulator.emulator
    emulator.inject(
        Outcome(error="CUDA out of memory", match="doomed"),
        Throttle(route=Route.CREATE, retry_after_s=1, match="throttled"),
        ServerError(route=Route.CREATE, status=503, match="unanswered"),
    )
    before = await scrape(gateway_metrics)
    assert before.value("mediagen_process_info", role="serve") == 1

    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        finals = {}
        events = 0
        for prompt in ("a fine fox", "a doomed fox", "a throttled fox", "an unanswered fox"):
            job = (await stub.GenerateMedia(small_request(prompt), timeout=10)).job
            finals[prompt], seen = await _watch(stub, job.id)
            events += seen
        slow = (await stub.GenerateMedia(small_request("a slow fox", latency_s=30), timeout=10)).job

        async def running() -> job_pb2.Job:
            return (await stub.GetJob(pb.GetJobRequest(id=slow.id))).job

        await wait_until(running, lambda j: j.status == job_pb2.JOB_STATE_RUNNING, timeout_s=10)
        during = await scrape(own_metrics)
        await stub.CancelJob(pb.CancelJobRequest(id=slow.id))
        finals["slow"], seen = await _watch(stub, slow.id)
        events += seen
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GenerateMedia(pb.GenerateMediaRequest(prompt=""), timeout=10)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    async with httpx.AsyncClient(base_url=service.http_url) as http:
        assert (await http.get(f"/api/v1/jobs/status/{slow.id}")).status_code == 200
        assert (await http.get("/no/such/route")).status_code == 404

    states = {p: job_pb2.JobState.Name(j.status) for p, j in finals.items()}
    assert states == {
        "a fine fox": "JOB_STATE_SUCCEEDED",
        "a doomed fox": "JOB_STATE_FAILED",
        "a throttled fox": "JOB_STATE_SUCCEEDED",
        "an unanswered fox": "JOB_STATE_SUCCEEDED",
        "slow": "JOB_STATE_CANCELED",
    }
    stored_bytes = sum(m.size_bytes for j in finals.values() for m in j.media)
    assert stored_bytes > 0

    after = await scrape(gateway_metrics)
    # The process's own port shows the same registry.
    own = await scrape(own_metrics)
    submitted = "mediagen_jobs_submitted_total"
    assert own.value(submitted) == after.value(submitted)
    delta = Delta(before, after)
    model = DEFAULT_MODEL

    # API: five jobs, one refused request; calls by method and code.
    assert delta("mediagen_jobs_submitted_total", model=model) == 5
    assert delta("mediagen_grpc_requests_total", method=GENERATE, code="OK") == 5
    assert delta("mediagen_grpc_requests_total", method=GENERATE, code="INVALID_ARGUMENT") == 1
    assert delta("mediagen_grpc_request_duration_seconds_count", method=GENERATE) == 6
    assert delta("mediagen_grpc_requests_total", method=WATCH, code="OK") == 5
    assert delta("mediagen_watch_events_sent_total") == events
    assert after.value("mediagen_watch_streams_open") == 0
    assert during.value("mediagen_watch_streams_open") == 0

    # Jobs: final states, attempts, retries by reason.
    assert delta("mediagen_jobs_finished_total", state="succeeded", model=model) == 3
    assert delta("mediagen_jobs_finished_total", state="failed", model=model) == 1
    assert delta("mediagen_jobs_finished_total", state="canceled", model=model) == 1
    # A 429 is waited out within the attempt (the shared pause), not a job retry.
    assert delta("mediagen_job_retries_total", reason="throttled") == 0
    assert delta("mediagen_job_retries_total", reason="provider") == 1
    assert delta("mediagen_job_retries_total") == 1
    assert delta("mediagen_job_queued_seconds_count", model=model) == 5
    assert delta("mediagen_job_running_seconds_count", model=model) == 6  # 5 jobs, 1 retry
    assert delta("mediagen_leases_lost_total") == 0

    # Provider: creates by outcome; the unanswered one looked for, found nothing.
    assert delta("mediagen_provider_requests_total", operation="create", outcome="ok") == 5
    assert delta("mediagen_provider_requests_total", operation="create", outcome="transient") == 1
    assert delta("mediagen_provider_requests_total", operation="create", outcome="ambiguous") == 1
    assert delta("mediagen_provider_request_duration_seconds_count", operation="create") == 7
    assert delta("mediagen_provider_throttled_total", operation="create") == 1
    assert delta("mediagen_ambiguous_creates_total") == 1
    assert delta("mediagen_prediction_recoveries_total", outcome="none") == 1
    assert delta("mediagen_provider_requests_total", operation="download", outcome="ok") == 3
    assert delta("mediagen_provider_requests_total", operation="cancel", outcome="ok") == 1

    # Storage: exactly the bytes of the media the jobs report.
    assert delta("mediagen_storage_bytes_total") == stored_bytes
    assert delta("mediagen_storage_operations_total", operation="put", outcome="ok") == 3
    assert delta("mediagen_storage_operation_duration_seconds_count", operation="put") == 3

    # HTTP through the gateway, by route template, never the raw path.
    assert (
        delta("mediagen_http_requests_total", route="/api/v1/jobs/status/{id}", status="200") == 1
    )
    assert delta("mediagen_http_requests_total", route="other", status="404") == 1
    assert not any("no/such" in str(labels) for _, labels in after.samples)

    # Gauges: one job running during the run, none at the end.
    assert during.value("mediagen_worker_jobs_in_flight") == 1
    assert during.value("mediagen_jobs", state="running") == 1
    assert after.value("mediagen_worker_jobs_in_flight") == 0
    assert after.value("mediagen_jobs", state="running") == 0
    assert after.value("mediagen_jobs", state="pending") == 0
    assert after.value("mediagen_queue_depth") == 0
    assert after.value("mediagen_queue_oldest_age_seconds") == 0
    assert after.value("mediagen_worker_concurrency") == service.settings.worker_concurrency


async def test_invented_method_names_make_no_series(service: Embedded) -> None:
    url = f"{service.http_url}/metrics"
    before = await scrape(url)
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/evil.Service/Job_1234"
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(b"", timeout=5)
    assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED
    after = await scrape(url)
    assert Delta(before, after)("mediagen_grpc_requests_total", method="unknown") == 1
    assert not any("evil" in str(labels) for _, labels in after.samples)


async def test_the_metrics_port_serves_only_metrics(service: Embedded) -> None:
    base = f"http://127.0.0.1:{service.metrics.port}"
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/api/v1/jobs")).status_code == 404
        assert (await http.post("/metrics")).status_code == 405
        head = await http.head("/metrics")
        assert head.status_code == 200 and head.content == b""


async def test_metrics_off_means_no_endpoint_and_no_request_counts(tmp_path: Path) -> None:
    app = Embedded(embedded_settings(tmp_path / "data", metrics=False, metrics_port=free_port()))
    await app.start()
    try:
        assert app.metrics.port == 0
        async with httpx.AsyncClient(base_url=app.http_url) as http:
            assert (await http.get("/metrics")).status_code == 404
        from mediagen.metrics import definitions as m

        before = m.GRPC_REQUESTS.labels(GENERATE, "OK")._value.get()
        async with grpc.aio.insecure_channel(app.grpc_target) as channel:
            stub = pb_grpc.MediaGenerationServiceStub(channel)
            await stub.GenerateMedia(small_request("a quiet fox"), timeout=10)
        assert m.GRPC_REQUESTS.labels(GENERATE, "OK")._value.get() == before
    finally:
        await app.stop()
