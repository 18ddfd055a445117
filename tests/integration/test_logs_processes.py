"""Issue 9: one request id finds a job's whole story across processes. `mediagen api`,
`mediagen worker` and `mediagen gateway` run as OS processes (PostgreSQL, Redis, S3 on moto, the
emulator as Replicate) with their default log format; every line each writes to stderr is
parsed as JSON, and the API's and the worker's lines about a job carry the job's request id —
the caller's, or the one the service made and returned."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest

from mediagen.config import S3Settings
from mediagen.logs.setup import CHATTY_LOGGERS
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.api_keys import drop_keys, tenant_keys
from tests.fixtures.emulator import small_request
from tests.fixtures.processes import Cluster, Proc

TENANT = "acme"
GENERATED = re.compile(r"[0-9a-f]{32}")

Line = dict[str, Any]


@dataclass
class Deployment:
    api: str
    gateway: str
    auth: list[tuple[str, str]]
    procs: dict[str, Proc]

    def lines(self, name: str) -> list[Line]:
        """Every line the process wrote to stderr, each parsed as a JSON object."""
        errors = self.procs[name].errors
        assert errors is not None
        text = errors.read_text()
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines, f"{name} logged nothing"
        for line in lines:
            assert {"time", "level", "logger", "message"} <= line.keys(), line
        return lines


@pytest.fixture
def deployment(
    cluster: Cluster, postgres_url: str, s3_settings: S3Settings
) -> Iterator[Deployment]:
    cluster.distributed(postgres_url, s3_settings, token="r8_logs_test_token")
    keys = asyncio.run(tenant_keys(postgres_url, TENANT))
    cluster.env |= {
        "MEDIAGEN_EMULATOR_LATENCY_S": "0.3",
        "MEDIAGEN_POLL_INTERVAL_S": "0.1",
        "MEDIAGEN_POLL_INTERVAL_MAX_S": "0.2",
        "MEDIAGEN_SHUTDOWN_GRACE_S": "1",
        "MEDIAGEN_DB_POOL_SIZE": "3",
        "MEDIAGEN_DB_MAX_OVERFLOW": "2",
    }
    try:
        # All started at once (none needs another to start), then waited for.
        emulator = cluster.emulator()
        api = cluster.api(separate_stderr=True)
        worker = cluster.worker(separate_stderr=True)
        gateway = cluster.gateway(api.address, separate_stderr=True)
        for server in (emulator, api, worker, gateway):
            server.ready()
        yield Deployment(
            api=api.address,
            gateway=gateway.address,
            auth=keys[TENANT],
            procs={"api": api.proc, "worker": worker.proc, "gateway": gateway.proc},
        )
    finally:
        cluster.stop_all()
        asyncio.run(drop_keys(postgres_url))


async def _submit(
    stub: pb_grpc.MediaGenerationServiceStub, metadata: list[tuple[str, str]], prompt: str
) -> tuple[str, str]:
    """The new job's id and the request id the API answered with."""
    call = stub.GenerateMedia(small_request(prompt), timeout=10, metadata=metadata)
    job = (await call).job
    answered = dict(await call.initial_metadata())
    return job.id, str(answered["x-request-id"])


async def _finished(
    stub: pb_grpc.MediaGenerationServiceStub, metadata: list[tuple[str, str]], job_id: str
) -> int:
    last = None
    async for response in stub.WatchJob(
        pb.WatchJobRequest(id=job_id), timeout=60, metadata=metadata
    ):
        last = response.event.job
    assert last is not None
    return last.status


def _about(lines: list[Line], job_id: str) -> list[Line]:
    return [line for line in lines if line.get("job_id") == job_id]


async def test_the_api_and_the_worker_log_a_job_under_one_request_id(
    deployment: Deployment,
) -> None:
    auth = deployment.auth
    async with grpc.aio.insecure_channel(deployment.api) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        given, given_id = await _submit(stub, [*auth, ("x-request-id", "owl-1")], "a given owl")
        made, made_id = await _submit(stub, auth, "an unnamed owl")
        # An id that is not safe to log is replaced, not trusted.
        _, replaced_id = await _submit(stub, [*auth, ("x-request-id", "a b")], "a renamed owl")

        async with httpx.AsyncClient(base_url=deployment.gateway, timeout=10) as http:
            headers = {"Authorization": auth[0][1]}
            reply = await http.post(
                "/api/v1/jobs/generate",
                json={"prompt": "an owl over http", "parameters": {"width": 64, "height": 64}},
                headers={**headers, "X-Request-Id": "owl-http"},
            )
            assert reply.status_code == 200, reply.text
            assert reply.headers["x-request-id"] == "owl-http"
            over_http = reply.json()["id"]
            missing = await http.get("/api/v1/jobs/status/no-such-job", headers=headers)
            assert missing.status_code == 404
            assert GENERATED.fullmatch(missing.headers["x-request-id"])

        # Errors carry the id too.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetJob(
                pb.GetJobRequest(id="no-such-job"),
                timeout=10,
                metadata=[*auth, ("x-request-id", "owl-404")],
            )
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        assert dict(refused.value.initial_metadata())["x-request-id"] == "owl-404"
        with pytest.raises(grpc.aio.AioRpcError) as unknown:  # refused before the servicer
            await stub.GetJob(pb.GetJobRequest(id=given), timeout=10)
        assert unknown.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert GENERATED.fullmatch(dict(unknown.value.initial_metadata())["x-request-id"])

        for job_id in (given, made, over_http):
            assert await _finished(stub, auth, job_id) == job_pb2.JOB_STATE_SUCCEEDED

    assert given_id == "owl-1"
    assert GENERATED.fullmatch(made_id) and GENERATED.fullmatch(replaced_id)
    assert made_id != replaced_id
    # Stopped, so every line is written (the worker logs a job's end after publishing it).
    for proc in deployment.procs.values():
        proc.stop()
    api, worker = deployment.lines("api"), deployment.lines("worker")
    deployment.lines("gateway")  # JSON too

    for job_id, request_id in ((given, "owl-1"), (made, made_id), (over_http, "owl-http")):
        from_api, from_worker = _about(api, job_id), _about(worker, job_id)
        assert from_api and from_worker, (job_id, api, worker)
        assert {line["request_id"] for line in from_api + from_worker} == {request_id}
        assert {line["tenant"] for line in from_api + from_worker} == {TENANT}
        assert {line["attempt"] for line in from_worker} == {1}
        story = " | ".join(line["message"] for line in from_worker)
        for step in ("pending→running", "prediction=", "created", "bytes", "running→succeeded"):
            assert step in story, story
    # Polls are DEBUG: the INFO log holds no per-request lines of the HTTP client, nor one per
    # queue message (the claim says what a message led to).
    assert not [line for line in worker if line["logger"] in CHATTY_LOGGERS]
