"""A call about one job (GetJob, WatchJob, CancelJob) logs with that job's id, so the id finds
the call's lines — an unexpected failure's above all. The embedded service over real gRPC; its
SQLite tables are renamed away for the calls, so the store really fails, then put back."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from mediagen.embedded import Embedded
from mediagen.logs.setup import build_handler
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.emulator import small_request

TABLES = ("jobs", "job_events")


@pytest.fixture
def api_log() -> Iterator[io.StringIO]:
    """The servicer's log lines, as JSON through the production handler."""
    out = io.StringIO()
    logger = logging.getLogger("mediagen.api.servicer")
    handler = build_handler("json", out)
    logger.addHandler(handler)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


async def _rename(embedded: Embedded, suffix_from: str, suffix_to: str) -> None:
    # Through the service's own writer: SQLite has one, and it would hold off any other.
    assert embedded.core is not None
    async with embedded.core.db.writing() as session:
        for table in TABLES:
            await session.execute(
                text(f"ALTER TABLE {table}{suffix_from} RENAME TO {table}{suffix_to}")
            )


async def test_a_failed_call_about_a_job_logs_its_id(
    embedded: Embedded, stub: pb_grpc.MediaGenerationServiceStub, api_log: io.StringIO
) -> None:
    job = (await stub.GenerateMedia(small_request("a fox", latency_s=30), timeout=10)).job
    calls: list[tuple[str, Any]] = [
        ("GetJob", lambda: stub.GetJob(pb.GetJobRequest(id=job.id), timeout=10)),
        ("CancelJob", lambda: stub.CancelJob(pb.CancelJobRequest(id=f" {job.id} "), timeout=10)),
        ("WatchJob", lambda: stub.WatchJob(pb.WatchJobRequest(id=job.id), timeout=10).read()),
        # An id that could forge a line is not written as one.
        ("GetJob", lambda: stub.GetJob(pb.GetJobRequest(id="x\ny"), timeout=10)),
    ]
    await _rename(embedded, "", "_away")
    try:
        for _, call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await call()
            assert failed.value.code() is grpc.StatusCode.INTERNAL
    finally:
        await _rename(embedded, "_away", "")

    lines = [json.loads(line) for line in api_log.getvalue().splitlines()]
    failures = [line for line in lines if line["message"].endswith(" failed")]
    assert [(line["message"], line.get("job_id")) for line in failures] == [
        ("GetJob failed", job.id),
        ("CancelJob failed", job.id),
        ("WatchJob failed", job.id),
        ("GetJob failed", None),
    ]
    assert all(line["request_id"] for line in failures)  # the call's other context stays
    # Outside a call nothing is left bound.
    assert not [line for line in lines if line not in failures and "job_id" in line]
