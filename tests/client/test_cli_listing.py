"""``mediagen jobs list`` filters against the real embedded service, and its "more:" hint run as
printed, in a shell."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mediagen.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from mediagen.embedded import Embedded
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.emulator import small_request

MODEL = "acme/slow-image"


async def _canceled(stub: pb_grpc.MediaGenerationServiceStub, prompt: str, model: str) -> str:
    request = small_request(prompt, latency_s=30)
    request.model = model
    job = (await stub.GenerateMedia(request, timeout=10)).job
    await stub.CancelJob(pb.CancelJobRequest(id=job.id), timeout=10)
    async for response in stub.WatchJob(pb.WatchJobRequest(id=job.id), timeout=20):
        last = response.event.job
    assert last.status == job_pb2.JOB_STATE_CANCELED
    return job.id


def _ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()[1:] if " CANCELED " in line]


async def test_filters_and_a_more_hint_that_runs_as_printed(
    embedded: Embedded, stub: pb_grpc.MediaGenerationServiceStub, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = [await _canceled(stub, f"fox {i}", MODEL) for i in range(3)]
    await _canceled(stub, "another model's fox", "acme/audio-gen")
    connection = ["--target", embedded.grpc_target, "--http-url", embedded.http_url]

    async def cli(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = await asyncio.to_thread(main, ["jobs", "list", *argv, *connection])
        out, err = capsys.readouterr()
        return status, out, err

    status, out, _ = await cli(
        "--status", "canceled", "--model", MODEL, "--newer-than", "1h", "--page-size", "2"
    )
    assert status == EXIT_OK
    assert _ids(out) == ours[:0:-1]
    assert "2 of 3 jobs" in out
    (hint,) = [line.removeprefix("more: ") for line in out.splitlines() if "more:" in line]
    for words in ("--status canceled", f"--model {MODEL}", "--page-size 2", *connection):
        assert words in hint
    # The age as the time it meant, so the next page has exactly this page's filter.
    assert re.search(r" --newer-than \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", hint), hint

    # As a person would: paste it into a shell.
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    rerun = await asyncio.to_thread(
        subprocess.run, ["sh", "-c", hint], env=env, capture_output=True, text=True, timeout=60
    )
    assert rerun.returncode == EXIT_OK, rerun.stderr
    assert _ids(rerun.stdout) == ours[:1]
    assert "1 of 3 jobs" in rerun.stdout and "more:" not in rerun.stdout

    _, older, _ = await cli("--older-than", "1h")
    assert older.strip() == "0 of 0 jobs"
    listing = await stub.ListJobs(pb.ListJobsRequest(), timeout=10)
    since = {j.id: j.create_time.ToJsonString() for j in listing.jobs}[ours[1]]
    _, newer, _ = await cli("--model", MODEL, "--newer-than", since)
    assert _ids(newer) == ours[:0:-1]

    status, _, err = await cli("--model", "Not A Model")
    assert status == EXIT_FAILED
    assert err.startswith("mediagen: error: invalid argument: ") and "model: " in err
    with pytest.raises(SystemExit) as usage:
        main(["jobs", "list", "--older-than", "yesterday"])
    assert usage.value.code == EXIT_USAGE
