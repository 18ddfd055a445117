"""Calls authentication refuses are in the gRPC request metrics with the code the caller got,
as /metrics on the embedded service with keys shows them (not only the calls let through)."""

from __future__ import annotations

import grpc
import pytest

from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.auth.conftest import Secured
from tests.support.metrics import Delta, scrape

LIST = "/mediagen.v1.MediaGenerationService/ListJobs"
GENERATE = "/mediagen.v1.MediaGenerationService/GenerateMedia"


async def test_refused_calls_are_counted_with_their_code(secured: Secured) -> None:
    url = f"{secured.app.http_url}/metrics"
    before = await scrape(url)
    async with grpc.aio.insecure_channel(secured.app.grpc_target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        for metadata in ([], [("authorization", "Bearer nonsense")]):
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await stub.ListJobs(pb.ListJobsRequest(), metadata=metadata, timeout=10)
            assert unknown.value.code() is grpc.StatusCode.UNAUTHENTICATED
        viewer = secured.bearer("acme_viewer")
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.GenerateMedia(pb.GenerateMediaRequest(prompt="a fox"), metadata=viewer)
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
        await stub.ListJobs(pb.ListJobsRequest(), metadata=viewer, timeout=10)
    delta = Delta(before, await scrape(url))

    assert delta("mediagen_grpc_requests_total", method=LIST, code="UNAUTHENTICATED") == 2
    assert delta("mediagen_grpc_requests_total", method=GENERATE, code="PERMISSION_DENIED") == 1
    assert delta("mediagen_grpc_requests_total", method=LIST, code="OK") == 1
    assert delta("mediagen_grpc_requests_total") == 4
    assert delta("mediagen_grpc_request_duration_seconds_count", method=LIST) == 3
