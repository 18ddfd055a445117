"""``mediagen top --once`` against a real ``mediagen serve`` process (its own metrics registry,
so every count starts at zero): after a scripted set of jobs the frame shows exactly them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest

from mediagen.cli import EXIT_OK, main
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.emulator import small_request
from tests.fixtures.processes import Cluster, free_port, wait_for_grpc_health, wait_for_http

Stub = pb_grpc.MediaGenerationServiceStub


def _wait_for(stub: Stub, job_id: str, done: Callable[[job_pb2.Job], bool]) -> job_pb2.Job:
    deadline = time.monotonic() + 20
    while True:
        job = stub.GetJob(pb.GetJobRequest(id=job_id), timeout=5).job
        if done(job):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def _state(state: job_pb2.JobState.ValueType) -> Callable[[job_pb2.Job], bool]:
    return lambda job: job.status == state


def test_top_once_shows_what_the_service_did(
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
    httpx.post(f"http://127.0.0.1:{emulator_port}/_emulator/faults", json=fault).raise_for_status()

    with grpc.insecure_channel(target) as channel:
        stub = Stub(channel)

        def submit(prompt: str, latency_s: float) -> str:
            request = small_request(prompt, latency_s=latency_s)
            return stub.GenerateMedia(request, timeout=5).job.id

        for prompt in ("a fox", "an owl"):
            _wait_for(stub, submit(prompt, 0.05), _state(job_pb2.JOB_STATE_SUCCEEDED))
        doomed = _wait_for(stub, submit("a doomed fox", 0.05), _state(job_pb2.JOB_STATE_FAILED))
        slow = [submit(f"slow {i}", 60) for i in range(2)]  # both worker slots, for a minute
        for job_id in slow:
            _wait_for(stub, job_id, _state(job_pb2.JOB_STATE_RUNNING))
        dropped = submit("dropped", 60)  # no slot: it waits, and is cancelled waiting
        stub.CancelJob(pb.CancelJobRequest(id=dropped), timeout=5)
        waiting = submit("waiting", 60)

        capsys.readouterr()
        argv = ["top", "--target", target, "--http-url", base, "--once", "--interval", "0.3"]
        assert main(argv) == EXIT_OK
        frame = capsys.readouterr().out.splitlines()
        assert main([*argv, "--json"]) == EXIT_OK
        shown = json.loads(capsys.readouterr().out)
        assert _wait_for(stub, waiting, lambda _: True).status == job_pb2.JOB_STATE_PENDING

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

    assert shown["queueDepth"] == 1
    assert shown["jobs"] == {"pending": 1, "running": 2}
    assert shown["finished"] == {"succeeded": 2, "failed": 1, "canceled": 1}
    assert shown["workers"] == [
        {"url": f"{base}/metrics", "role": "serve", "inFlight": 2, "concurrency": 2}
    ]
    assert [f["id"] for f in shown["recentFailures"]] == [doomed.id]
    assert shown["unreachable"] == []
