"""Issue 7 part 5, end to end: model outputs cannot turn the worker against us.

The embedded service runs with a real-looking Replicate token, its base URL at the emulator
(reached through the official client); the emulator's ``Output``/``Outcome`` faults make
predictions return the outputs and errors an attacker would choose. Recording servers on
loopback stand where those outputs point, and ``loopback_only`` refuses (and records) any
connection or lookup that would leave the machine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2

from mediagen.embedded import Embedded
from mediagen.emulator import Outcome, Output, RunningEmulator
from mediagen.fetching.policy import (
    ADDRESS_FORBIDDEN,
    DOWNLOAD_TIMEOUT,
    HOST_NOT_ALLOWED,
    TOO_LARGE,
    TOO_MANY_OUTPUTS,
)
from mediagen.providers.base import PredictionStatus
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.embedded import embedded_settings
from tests.fixtures.emulator import EmulatorFactory
from tests.fixtures.outputs import PNG_BYTES, Net, OutputServerFactory

Stub = pb_grpc.MediaGenerationServiceStub
TOKEN = "r8_Xb3kQ9zL2mN8pR4tV6wY1aC5eG7iK0oS2uW4yZ"


@contextlib.asynccontextmanager
async def service(
    tmp_path: Path, emulator: RunningEmulator, *, hosts: tuple[str, ...] = (), **overrides: Any
) -> AsyncIterator[tuple[Embedded, Stub]]:
    """The embedded service against ``emulator`` with TOKEN; like ``serve``, the emulator's
    loopback address is allowed by its exact host:port entry, plus ``hosts``."""
    settings = embedded_settings(
        tmp_path / "data",
        replicate_api_token=TOKEN,
        replicate_base_url=emulator.base_url,
        output_hosts=(emulator.host_port, *hosts),
        max_attempts=1,
    ).replace(**overrides)
    app = Embedded(settings)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.grpc_target) as channel:
            yield app, pb_grpc.MediaGenerationServiceStub(channel)
    finally:
        await app.stop()


@pytest.fixture
async def emulator(emulator_factory: EmulatorFactory) -> RunningEmulator:
    return await emulator_factory(api_token=TOKEN)


def chosen(emulator: RunningEmulator, output: Any) -> str:
    """A prompt whose prediction succeeds with exactly ``output``."""
    prompt = f"output {uuid.uuid4().hex}"
    emulator.emulator.inject(Output(output=output, match=prompt))
    return prompt


async def run(stub: Stub, prompt: str) -> job_pb2.Job:
    job = (await stub.GenerateMedia(pb.GenerateMediaRequest(prompt=prompt))).job
    return await finished(stub, job.id)


async def finished(stub: Stub, job_id: str) -> job_pb2.Job:
    call = stub.WatchJob(pb.WatchJobRequest(id=job_id), timeout=30)
    events = [response.event async for response in call]
    assert events[-1].job.status in (
        job_pb2.JOB_STATE_SUCCEEDED,
        job_pb2.JOB_STATE_FAILED,
        job_pb2.JOB_STATE_CANCELED,
    )
    return events[-1].job


def reason(job: job_pb2.Job) -> str:
    for detail in job.error.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    raise AssertionError(f"no ErrorInfo in {job.error}")


async def test_outputs_naming_internal_addresses_are_never_fetched(
    tmp_path: Path,
    emulator: RunningEmulator,
    output_server: OutputServerFactory,
    loopback_only: Net,
) -> None:
    recorder = await output_server()
    try:
        recorder6 = await output_server("::1", recorder.port)
    except OSError:  # the port is taken on ::1; any other will do
        recorder6 = await output_server("::1")
    redirector = await output_server()
    port, port6 = recorder.port, recorder6.port
    not_listed = [
        f"http://127.0.0.1:{port}/0.bin",
        f"http://localhost:{port}/x.png",
        f"http://[::1]:{port6}/x.png",
        f"http://0.0.0.0:{port}/x.png",
        f"http://2130706433:{port}/x.png",
        f"http://[::ffff:127.0.0.1]:{port}/x.png",
        f"http://0x7f.1:{port}/x.png",
        f"http://127.1:{port}/x.png",
        f"https://127.0.0.1:{port}/x.png",
        "http://10.0.0.1/x.png",
        "http://169.254.169.254/latest/meta-data/",
        f"{redirector.origin}/redirect?to=http://127.0.0.1:{port}/x.png",
        f"{redirector.origin}/redirect?to=http://[::1]:{port6}/x.png",
        f"{redirector.origin}/redirect?to=http://169.254.169.254/latest/meta-data/",
    ]
    # Listed hosts whose address is internal: the host check passes, the address check refuses.
    internal = ("localhost", "10.0.0.1", "169.254.169.254", "fd00:ec2::254")
    listed = [
        "https://localhost/x.png",
        "https://10.0.0.1/x.png",
        "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://[fd00:ec2::254]/latest/meta-data/",
    ]
    async with service(tmp_path, emulator, hosts=(redirector.host_port, *internal)) as (app, stub):
        prompts = {url: chosen(emulator, [url]) for url in not_listed + listed}
        done = await asyncio.gather(*(run(stub, p) for p in prompts.values()))
        jobs = dict(zip(prompts, done, strict=True))

    for url, job in jobs.items():
        expected = ADDRESS_FORBIDDEN if url in listed else HOST_NOT_ALLOWED
        assert job.status == job_pb2.JOB_STATE_FAILED, url
        assert reason(job) == expected, (url, job.error.message)
        assert not job.media
        assert "refused" in job.error.message or "not an allowed output host" in job.error.message
    assert "localhost (127.0.0.1) is a loopback address" in jobs[listed[0]].error.message
    assert "169.254.169.254 is a cloud metadata address" in jobs[listed[2]].error.message
    assert "2130706433" in jobs[not_listed[4]].error.message
    # Nothing reached the recorders, nothing tried to leave the machine or reach port 443.
    assert recorder.requests == [] and recorder6.requests == []
    assert loopback_only.refused == []
    assert not loopback_only.ports() & {port, port6, 443, 80}
    # The allowed redirector was asked (and only it): each redirect was checked, then refused.
    assert len(redirector.requests) == 3
    assert all("authorization" not in r.headers for r in redirector.requests)
    assert not (app.settings.media_dir).exists() or not any(app.settings.media_dir.iterdir())


async def test_the_token_goes_only_to_the_hosts_that_need_it(
    tmp_path: Path,
    emulator: RunningEmulator,
    output_server: OutputServerFactory,
    loopback_only: Net,
) -> None:
    delivery, capture = await output_server(), await output_server()
    outputs = [
        f"{capture.origin}/a.png",  # allowed for fetching, not for the token
        f"{delivery.origin}/redirect?to={capture.origin}/b.png",  # token host, then elsewhere
        f"{delivery.origin}/c.png",
    ]
    async with service(
        tmp_path,
        emulator,
        hosts=(delivery.host_port, capture.host_port),
        output_token_hosts=(delivery.host_port,),
    ) as (_, stub):
        job = await run(stub, chosen(emulator, outputs))
        async with httpx.AsyncClient() as http:
            bodies = [(await http.get(m.url)).raise_for_status().content for m in job.media]

    assert job.status == job_pb2.JOB_STATE_SUCCEEDED, job.error.message
    assert bodies == [PNG_BYTES] * 3
    assert [r.target for r in capture.requests] == ["/a.png", "/b.png"]
    assert all("authorization" not in r.headers for r in capture.requests)
    assert [r.headers.get("authorization") for r in delivery.requests] == [f"Bearer {TOKEN}"] * 2
    assert loopback_only.refused == []


async def test_a_slow_drip_fails_at_the_configured_deadline(
    tmp_path: Path, emulator: RunningEmulator, output_server: OutputServerFactory
) -> None:
    drip = await output_server()
    url = f"{drip.origin}/drip?bytes=10000&every_s=0.1"
    async with service(tmp_path, emulator, hosts=(drip.host_port,), download_timeout_s=1.5) as (
        _,
        stub,
    ):
        job = (await stub.GenerateMedia(pb.GenerateMediaRequest(prompt=chosen(emulator, url)))).job
        await asyncio.wait_for(drip.dripping.wait(), 15)
        started = time.monotonic()
        job = await finished(stub, job.id)
        elapsed = time.monotonic() - started

    assert job.status == job_pb2.JOB_STATE_FAILED
    assert reason(job) == DOWNLOAD_TIMEOUT
    assert "did not finish within 1.5s" in job.error.message
    assert 1.0 <= elapsed < 5.0 and not job.media


async def test_cancel_during_a_copy_ends_canceled_and_keeps_nothing(
    tmp_path: Path, emulator: RunningEmulator, output_server: OutputServerFactory
) -> None:
    files = await output_server()
    outputs = [f"{files.origin}/first.png", f"{files.origin}/drip?bytes=100000&every_s=0.05"]
    async with service(tmp_path, emulator, hosts=(files.host_port,)) as (app, stub):
        job = (
            await stub.GenerateMedia(pb.GenerateMediaRequest(prompt=chosen(emulator, outputs)))
        ).job
        await asyncio.wait_for(files.dripping.wait(), 15)
        started = time.monotonic()
        await stub.CancelJob(pb.CancelJobRequest(id=job.id))
        job = await finished(stub, job.id)
        elapsed = time.monotonic() - started
        got = (await stub.GetJob(pb.GetJobRequest(id=job.id))).job
        job_dir = app.settings.media_dir / job.id

    assert job.status == job_pb2.JOB_STATE_CANCELED and got.status == job.status
    assert elapsed < 3 and not got.media
    # The first output had been stored; it is gone, and so is the partial second one.
    assert not job_dir.exists() or list(job_dir.iterdir()) == []


async def test_a_huge_provider_error_is_stored_truncated_and_the_job_stays_readable(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    prompt = f"huge error {uuid.uuid4().hex}"
    huge = "CUDA error: " + "E" * (5 * 1024 * 1024)
    emulator.emulator.inject(Outcome(status=PredictionStatus.FAILED, error=huge, match=prompt))
    async with service(tmp_path, emulator) as (app, stub):
        job = await run(stub, prompt)
        got = (await stub.GetJob(pb.GetJobRequest(id=job.id))).job
        page = await stub.ListJobs(pb.ListJobsRequest(page_size=10))
        replay = stub.WatchJob(pb.WatchJobRequest(id=job.id), timeout=10)
        events = [response.event async for response in replay]
        async with httpx.AsyncClient() as http:
            status = await http.get(f"http://127.0.0.1:{app.http_port}/api/v1/jobs/status/{job.id}")

    assert got.status == job_pb2.JOB_STATE_FAILED
    message = got.error.message
    assert message.startswith("the model failed: CUDA error: EEE")
    assert len(message) < 3000 and "[truncated: " in message
    assert [j.id for j in page.jobs] == [job.id] and page.jobs[0].error.message == message
    assert events[-1].job.error.message == message
    assert status.status_code == 200 and status.json()["error"]["message"] == message


async def test_a_token_echoed_upstream_never_reaches_the_job_or_the_logs(
    tmp_path: Path, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    prompt = f"echo {uuid.uuid4().hex}"
    echo = (
        f"upstream rejected Authorization: Bearer {TOKEN} (token {TOKEN}); "
        "see https://cdn.example/x?X-Amz-Signature=c0ffee&sig=abc"
    )
    emulator.emulator.inject(Outcome(status=PredictionStatus.FAILED, error=echo, match=prompt))
    async with service(tmp_path, emulator) as (app, stub):
        job = await run(stub, prompt)
        listed = await stub.ListJobs(pb.ListJobsRequest())
    # Every byte the service stored (the job rows and events in its database, its media): no
    # secret there either, whatever the API would make of it.
    stored = b"".join(f.read_bytes() for f in app.settings.data_dir.rglob("*") if f.is_file())
    assert job.id.encode() in stored

    assert job.status == job_pb2.JOB_STATE_FAILED
    assert "upstream rejected Authorization: [REDACTED]" in job.error.message
    for secret in (TOKEN, "c0ffee", "sig=abc"):
        assert secret not in job.error.message
        assert secret not in str(listed)
        assert secret not in caplog.text
        assert secret.encode() not in stored
    assert f"job={job.id} running→failed" in caplog.text  # the failure was logged, redacted


async def test_too_many_outputs_and_an_oversized_data_uri_fail_clearly(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    png = "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()
    big = "data:application/octet-stream;base64," + base64.b64encode(b"x" * 200_000).decode()
    async with service(tmp_path, emulator, max_outputs=4, max_output_bytes=100_000) as (_, stub):
        many, oversized, fine = await asyncio.gather(
            run(stub, chosen(emulator, [png] * 300)),
            run(stub, chosen(emulator, big)),
            run(stub, chosen(emulator, [png, png])),
        )

    assert many.status == job_pb2.JOB_STATE_FAILED and reason(many) == TOO_MANY_OUTPUTS
    assert "returned 300 outputs; at most 4" in many.error.message and not many.media
    assert oversized.status == job_pb2.JOB_STATE_FAILED and reason(oversized) == TOO_LARGE
    assert "over the limit of 100000 bytes" in oversized.error.message and not oversized.media
    assert fine.status == job_pb2.JOB_STATE_SUCCEEDED and len(fine.media) == 2
