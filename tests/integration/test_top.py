"""``mediagen top --once`` against a real ``mediagen serve`` process (its own metrics registry,
so every count starts at zero): after a scripted set of jobs the frame shows exactly them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest

from mediagen.cli import EXIT_FAILED, EXIT_OK, main
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.emulator import small_request, wait_until
from tests.fixtures.processes import Cluster, free_port, wait_for_grpc_health, wait_for_http

Stub = pb_grpc.MediaGenerationServiceStub


async def _wait_for(stub: Stub, job_id: str, done: Callable[[job_pb2.Job], bool]) -> job_pb2.Job:
    async def job() -> job_pb2.Job:
        return (await stub.GetJob(pb.GetJobRequest(id=job_id), timeout=5)).job

    return await wait_until(job, done, timeout_s=20, interval_s=0.05)


def _state(state: job_pb2.JobState.ValueType) -> Callable[[job_pb2.Job], bool]:
    return lambda job: job.status == state


async def test_top_once_shows_what_the_service_did(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grpc_port, http_port, emulator_port = free_port(), free_port(), free_port()
    serve = cluster.start(
        "serve",
        "serve",
        env={
            "MEDIAGEN_DATA_DIR": str(tmp_path / "data"),
            "MEDIAGEN_GRPC_PORT": str(grpc_port),
            "MEDIAGEN_HTTP_PORT": str(http_port),
            "MEDIAGEN_EMULATOR_PORT": str(emulator_port),
            "MEDIAGEN_WORKER_CONCURRENCY": "2",
            "MEDIAGEN_METRICS_QUERY_INTERVAL_S": "0",
            "MEDIAGEN_POLL_INTERVAL_S": "0.05",
            "MEDIAGEN_SHUTDOWN_GRACE_S": "0.5",
        },
    )
    target, base = f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}"
    wait_for_grpc_health(target, serve)
    wait_for_http(f"{base}/api/v1/health", serve)
    fault = {"kind": "outcome", "status": "failed", "error": "CUDA out of memory", "match": "doom"}
    async with httpx.AsyncClient() as http:
        armed = await http.post(f"http://127.0.0.1:{emulator_port}/_emulator/faults", json=fault)
        armed.raise_for_status()

    async with grpc.aio.insecure_channel(target) as channel:
        stub = Stub(channel)

        async def submit(prompt: str, latency_s: float) -> str:
            request = small_request(prompt, latency_s=latency_s)
            return (await stub.GenerateMedia(request, timeout=5)).job.id

        for prompt in ("a fox", "an owl"):
            await _wait_for(stub, await submit(prompt, 0.05), _state(job_pb2.JOB_STATE_SUCCEEDED))
        doomed = await _wait_for(
            stub, await submit("a doomed fox", 0.05), _state(job_pb2.JOB_STATE_FAILED)
        )
        slow = [await submit(f"slow {i}", 60) for i in range(2)]  # both worker slots, a minute
        for job_id in slow:
            await _wait_for(stub, job_id, _state(job_pb2.JOB_STATE_RUNNING))
        dropped = await submit("dropped", 60)  # no slot: it waits, and is cancelled waiting
        await stub.CancelJob(pb.CancelJobRequest(id=dropped), timeout=5)
        waiting = await submit("waiting", 60)

        capsys.readouterr()
        argv = ["top", "--target", target, "--http-url", base, "--once", "--interval", "0.3"]
        assert await asyncio.to_thread(main, argv) == EXIT_OK
        frame = capsys.readouterr().out.splitlines()
        assert await asyncio.to_thread(main, [*argv, "--json"]) == EXIT_OK
        shown = json.loads(capsys.readouterr().out)
        assert (await _wait_for(stub, waiting, bool)).status == job_pb2.JOB_STATE_PENDING
        # An endpoint that is not one: named, and the exit status says a source failed.
        wrong = [*argv, "--metrics", f"{base}/metrics", "--metrics", f"{base}/api/v1/nothing"]
        assert await asyncio.to_thread(main, wrong) == EXIT_FAILED
        partial = capsys.readouterr().out.splitlines()

    assert frame[1].startswith("queue       1 waiting, oldest ")
    assert frame[2] == "jobs        pending 1  running 2"
    assert frame[3].startswith("finished    succeeded 2  failed 1  canceled 1  ")
    assert frame[4].startswith("throughput  0.00 jobs/s (")  # nothing finished during it
    assert frame[5:8] == [
        "workers",
        "  IN FLIGHT  ROLE   ENDPOINT",
        f"  2/2        serve  {base}/metrics",
    ]
    assert frame[8] == "recent failures"
    (failure,) = frame[10:]
    assert failure.split()[:2] == [doomed.id, doomed.model]
    assert failure.endswith("CUDA out of memory")

    # The same figures (times and window aside), then the endpoint it could not read.
    assert partial[2:4] == frame[2:4] and partial[5:-1] == frame[5:]
    assert partial[-1] == f"unreachable {base}/api/v1/nothing: HTTP 404"

    assert shown["queueDepth"] == 1
    assert shown["jobs"] == {"pending": 1, "running": 2}
    assert shown["finished"] == {"succeeded": 2, "failed": 1, "canceled": 1}
    assert shown["workers"] == [
        {"url": f"{base}/metrics", "role": "serve", "inFlight": 2, "concurrency": 2}
    ]
    assert [f["id"] for f in shown["recentFailures"]] == [doomed.id]
    assert shown["unreachable"] == []
