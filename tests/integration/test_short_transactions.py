"""No transaction stays open across a call to the provider or to storage: with PostgreSQL ending
any session idle in a transaction for 0.2 s, and every provider call (create, poll, download)
taking 0.5 s, a job still runs through on its first attempt and the server ends no session."""

from __future__ import annotations

from pathlib import Path

import grpc

from mediagen.embedded import Embedded
from mediagen.emulator import Delay, Route
from mediagen.jobs.migrate import upgrade
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.embedded import embedded_settings
from tests.fixtures.private_postgres import PrivatePostgres


async def test_slow_provider_calls_hold_no_transaction(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    await upgrade(private_postgres.url)
    settings = embedded_settings(
        tmp_path / "data",
        database_url=private_postgres.url,
        db_idle_in_transaction_timeout_s=0.2,
        lease_s=3.0,  # renewals (every second) run while the provider is slow, too
    )
    app = Embedded(settings)
    await app.start()
    try:
        for route in (Route.CREATE, Route.GET, Route.FILE):
            app.emulator.emulator.inject(Delay(route=route, delay_s=0.5, times=None))
        async with grpc.aio.insecure_channel(app.grpc_target) as channel:
            stub = pb_grpc.MediaGenerationServiceStub(channel)
            request = pb.GenerateMediaRequest(
                prompt="a slow fox",
                parameters=job_pb2.GenerationParameters(width=64, height=64, num_outputs=2),
            )
            job = (await stub.GenerateMedia(request, timeout=30)).job
            events = [
                response.event
                async for response in stub.WatchJob(pb.WatchJobRequest(id=job.id), timeout=60)
            ]
    finally:
        await app.stop()
    final = events[-1].job
    assert final.status == job_pb2.JOB_STATE_SUCCEEDED, final.error
    assert final.attempt == 1 and len(final.media) == 2
    assert "idle-in-transaction" not in private_postgres.log()
