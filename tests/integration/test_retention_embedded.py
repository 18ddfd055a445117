"""Issue 9: retention on the embedded service, as a user sees it. With a 3 s retention checked
every 0.2 s, a finished job disappears (GetJob and GetMedia NOT_FOUND, its URL 404, its file
gone, its request_id free again) while one that finished later stays, and /metrics counts
exactly what went."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from mediagen.embedded import Embedded
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.embedded import embedded_settings
from tests.fixtures.emulator import small_request, wait_until
from tests.support.metrics import Delta, scrape

RETENTION_S = 3.0
REQUEST_ID = "9d1e5f0a-3b7c-4e2d-8a6f-1c0b9e8d7a65"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Embedded]:
    settings = embedded_settings(
        tmp_path / "data", retention_s=RETENTION_S, retention_interval_s=0.2
    )
    app = Embedded(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def _status(stub: pb_grpc.MediaGenerationServiceStub, job_id: str) -> int:
    """The job's state, or -1 once it is NOT_FOUND."""
    try:
        return (await stub.GetJob(pb.GetJobRequest(id=job_id), timeout=5)).job.status
    except grpc.aio.AioRpcError as exc:
        if exc.code() is grpc.StatusCode.NOT_FOUND:
            return -1
        raise


async def test_an_old_finished_job_goes_and_a_newer_one_stays(service: Embedded) -> None:
    assert service.core is not None
    metrics = f"{service.http_url}/metrics"
    before = await scrape(metrics)
    succeeded = job_pb2.JOB_STATE_SUCCEEDED
    async with (
        grpc.aio.insecure_channel(service.grpc_target) as channel,
        httpx.AsyncClient() as http,
    ):
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        request = small_request("an old fox", latency_s=0.2)
        request.request_id = REQUEST_ID
        old = (await stub.GenerateMedia(request, timeout=10)).job
        newer = (
            await stub.GenerateMedia(small_request("a newer fox", latency_s=3), timeout=10)
        ).job

        await wait_until(lambda: _status(stub, old.id), lambda s: s == succeeded, timeout_s=10)
        old = (await stub.GetJob(pb.GetJobRequest(id=old.id))).job
        (media,) = old.media
        events = await service.core.store.events_after(old.id, 0, tenant=None)
        assert (await http.get(media.url)).status_code == 200
        folder = service.settings.media_dir / old.id
        assert folder.is_dir()

        await wait_until(lambda: _status(stub, newer.id), lambda s: s == succeeded, timeout_s=10)
        await wait_until(lambda: _status(stub, old.id), lambda s: s == -1, timeout_s=10)

        # The newer job finished ~3 s after the old one: it has that long still to live.
        newer = (await stub.GetJob(pb.GetJobRequest(id=newer.id))).job
        assert newer.status == succeeded
        assert (await http.get(newer.media[0].url)).status_code == 200
        after = await scrape(metrics)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetMedia(pb.GetMediaRequest(id=media.id))
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        assert (await http.get(media.url)).status_code == 404
        status = await http.get(f"{service.http_url}/api/v1/jobs/status/{old.id}")
        assert status.status_code == 404
        assert not folder.exists()
        again = (await stub.GenerateMedia(request, timeout=10)).job
        assert again.id != old.id

    delta = Delta(before, after)
    assert delta("mediagen_retention_deleted_total", kind="jobs") == 1
    assert delta("mediagen_retention_deleted_total", kind="media") == 1
    assert delta("mediagen_retention_deleted_total", kind="events") == len(events) >= 3
    assert delta("mediagen_retention_deleted_bytes_total") == media.size_bytes > 0
    assert delta("mediagen_retention_failures_total") == 0
