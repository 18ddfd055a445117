"""The service over a private PostgreSQL that goes down and comes back: while it is down every
call answers UNAVAILABLE with a retry delay (503 over HTTP), never INTERNAL, and once it is
back the same server works again, without a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mediagen.embedded import Embedded
from mediagen.jobs.migrate import upgrade
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.embedded import embedded_settings
from tests.fixtures.private_postgres import PrivatePostgres

Stub = pb_grpc.MediaGenerationServiceStub


def retry_delay_s(err: grpc.aio.AioRpcError) -> float:
    status = rpc_status.from_call(err)
    assert status is not None, err
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    raise AssertionError(f"no RetryInfo in {status}")


async def final_state(stub: Stub, job_id: str) -> job_pb2.Job:
    last = None
    async for response in stub.WatchJob(pb.WatchJobRequest(id=job_id), timeout=60):
        last = response.event.job
    assert last is not None
    return last


async def poll_codes(stub: Stub, job_id: str, stop: asyncio.Event) -> list[grpc.StatusCode]:
    """GetJob back to back (one at a time) until ``stop``; the code of each answer."""
    codes = []
    while not stop.is_set():
        try:
            await stub.GetJob(pb.GetJobRequest(id=job_id), timeout=30)
            codes.append(grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as err:
            codes.append(err.code())
        await asyncio.sleep(0.01)
    return codes


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_unavailable_while_the_database_is_down_then_back(
    private_postgres: PrivatePostgres, tmp_path: Path, mode: str
) -> None:
    await upgrade(private_postgres.url)
    app = Embedded(embedded_settings(tmp_path / "data", database_url=private_postgres.url))
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.grpc_target) as channel:
            stub = Stub(channel)
            request = pb.GenerateMediaRequest(
                prompt="a red fox", parameters=job_pb2.GenerationParameters(width=64, height=64)
            )
            before = (await stub.GenerateMedia(request, timeout=30)).job
            assert (await final_state(stub, before.id)).status == job_pb2.JOB_STATE_SUCCEEDED

            # Stopped while in use: every answer during the stop is OK or UNAVAILABLE.
            stop_polling = asyncio.Event()
            poller = asyncio.create_task(poll_codes(stub, before.id, stop_polling))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(private_postgres.stop, mode)
            await asyncio.sleep(0.5)
            stop_polling.set()
            codes = await poller
            assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, set(codes)
            assert codes[0] == grpc.StatusCode.OK and codes[-1] == grpc.StatusCode.UNAVAILABLE

            calls: dict[str, Awaitable[object]] = {
                "GetJob": stub.GetJob(pb.GetJobRequest(id=before.id), timeout=30),
                "GenerateMedia": stub.GenerateMedia(request, timeout=30),
                "ListJobs": stub.ListJobs(pb.ListJobsRequest(), timeout=30),
            }
            for name, call in calls.items():
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, (name, caught.value)
                assert retry_delay_s(caught.value) > 0
            async with httpx.AsyncClient(timeout=30) as http:
                reply = await http.get(
                    f"http://127.0.0.1:{app.http_port}/api/v1/jobs/status/{before.id}"
                )
            assert reply.status_code == 503, reply.text

            await asyncio.to_thread(private_postgres.start)
            got = (await stub.GetJob(pb.GetJobRequest(id=before.id), timeout=30)).job
            assert got.status == job_pb2.JOB_STATE_SUCCEEDED
            after = (await stub.GenerateMedia(request, timeout=30)).job
            assert (await final_state(stub, after.id)).status == job_pb2.JOB_STATE_SUCCEEDED
    finally:
        await app.stop()
