"""Shutdown and restart of the embedded service: health turns NOT_SERVING, open WatchJob
streams end with UNAVAILABLE and a resume point, and a job running at shutdown finishes after
the restart (SQLite keeps it; the reconciler wakes it)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mediagen.embedded import Embedded
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.embedded import embedded_settings

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_shutdown_drains_and_restart_finishes_the_job(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "data", shutdown_grace_s=1.0)
    app = Embedded(settings)
    await app.start()
    slow = struct_pb2.Struct()
    slow.update({"emulator_latency_s": 8})
    async with grpc.aio.insecure_channel(app.grpc_target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await health.read()).status == SERVING
        request = pb.GenerateMediaRequest(
            prompt="outlives its server",
            parameters=job_pb2.GenerationParameters(width=64, height=64, extra_input=slow),
        )
        job = (await stub.GenerateMedia(request)).job
        watch = stub.WatchJob(pb.WatchJobRequest(id=job.id))
        seen = []
        async for response in watch:
            seen.append(response.event)
            if response.event.job.status == job_pb2.JOB_STATE_RUNNING:
                break

        await app.stop()

        assert (await health.read()).status == NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for response in watch:
                seen.append(response.event)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert f"after_sequence={seen[-1].sequence}" in (err.value.details() or "")

    restarted = Embedded(settings)
    await restarted.start()
    try:
        async with grpc.aio.insecure_channel(restarted.grpc_target) as channel:
            stub = pb_grpc.MediaGenerationServiceStub(channel)
            call = stub.WatchJob(
                pb.WatchJobRequest(id=job.id, after_sequence=seen[-1].sequence), timeout=120
            )
            rest = [response.event async for response in call]
    finally:
        await restarted.stop()
    sequences = [e.sequence for e in seen + rest]
    assert sequences == list(range(1, len(sequences) + 1))  # nothing lost across the restart
    final = rest[-1].job
    assert final.status == job_pb2.JOB_STATE_SUCCEEDED and final.attempt >= 2
