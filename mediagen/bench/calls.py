"""The gRPC calls a bench makes: submissions (closed loop or at an offered rate) and waiting
for jobs to finish, each bounded in count and time."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf import struct_pb2

from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc

Stub = pb_grpc.MediaGenerationServiceStub
Metadata = tuple[tuple[str, str], ...]
FINAL_STATES = ("succeeded", "failed", "canceled")
CALL_TIMEOUT_S = 30.0


def job_request(
    prompt: str, *, latency_s: float | None = None, output_bytes: int | None = None
) -> pb.GenerateMediaRequest:
    """A job for the emulator: the smallest image (cheap to make and copy), its run time and,
    for ``copy``, one streamed output of ``output_bytes``."""
    extra = struct_pb2.Struct()
    if latency_s is not None:
        extra.update({"emulator_latency_s": latency_s})
    if output_bytes is not None:
        extra.update({"emulator_output_bytes": output_bytes})
    params = job_pb2.GenerationParameters(width=64, height=64, num_outputs=1, extra_input=extra)
    return pb.GenerateMediaRequest(prompt=prompt, parameters=params)


def metadata_for(api_key: str | None) -> Metadata:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


@dataclass
class Submitted:
    """What a batch of GenerateMedia calls got back."""

    ids: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)  # of the accepted calls
    errors: Counter[str] = field(default_factory=Counter)  # status code name -> calls
    elapsed_s: float = 0.0
    started_at: float = 0.0  # time.time() of the first call


async def _submit_one(
    stub: Stub, request: pb.GenerateMediaRequest, metadata: Metadata, began: float, out: Submitted
) -> None:
    """``began`` is when the call was due, so a late start (an open loop behind schedule)
    counts in its latency."""
    try:
        reply = await stub.GenerateMedia(request, timeout=CALL_TIMEOUT_S, metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        out.errors[exc.code().name] += 1
        return
    out.latencies_s.append(time.perf_counter() - began)
    out.ids.append(reply.job.id)


async def submit_closed(
    stub: Stub,
    make: Callable[[int], pb.GenerateMediaRequest],
    *,
    jobs: int,
    concurrency: int,
    seconds: float,
    metadata: Metadata = (),
) -> Submitted:
    """``concurrency`` callers, each sending its next call when the last is answered, until
    ``jobs`` calls are made or ``seconds`` have passed."""
    out = Submitted(started_at=time.time())
    numbers = iter(range(jobs))
    started = time.perf_counter()
    deadline = started + seconds

    async def caller() -> None:
        for number in numbers:
            if time.perf_counter() >= deadline:
                return
            await _submit_one(stub, make(number), metadata, time.perf_counter(), out)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    out.elapsed_s = time.perf_counter() - started
    return out


async def submit_open(
    stub: Stub,
    make: Callable[[int], pb.GenerateMediaRequest],
    *,
    jobs: int,
    rate: float,
    seconds: float,
    metadata: Metadata = (),
) -> Submitted:
    """Calls started at ``rate`` per second whatever the answers, until ``jobs`` calls or
    ``seconds``; latency counts from when each call was due."""
    out = Submitted(started_at=time.time())
    started = time.perf_counter()
    calls: list[asyncio.Task[None]] = []
    for number in range(jobs):
        due = started + number / rate
        if due - started >= seconds:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        calls.append(asyncio.create_task(_submit_one(stub, make(number), metadata, due, out)))
    await asyncio.gather(*calls)
    out.elapsed_s = time.perf_counter() - started
    return out


async def count_final(stub: Stub, metadata: Metadata = ()) -> int:
    """Jobs in a final state, as the server counts them."""
    total = 0
    for status in FINAL_STATES:
        reply = await stub.ListJobs(
            pb.ListJobsRequest(status=status, page_size=1),
            timeout=CALL_TIMEOUT_S,
            metadata=metadata,
        )
        total += reply.total_size
    return total


async def wait_until_final(
    stub: Stub, *, expected: int, baseline: int, timeout_s: float, metadata: Metadata = ()
) -> float:
    """Poll until ``expected`` more jobs than ``baseline`` are final, or ``timeout_s``; the
    seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if await count_final(stub, metadata) - baseline >= expected:
            break
        await asyncio.sleep(0.2)
    return time.perf_counter() - started


async def fetch_jobs(
    stub: Stub, ids: Sequence[str], metadata: Metadata = ()
) -> dict[str, job_pb2.Job]:
    """The jobs ``ids`` as they are now, read a page (of 1,000) at a time, newest first."""
    wanted = set(ids)
    found: dict[str, job_pb2.Job] = {}
    token = ""
    while len(found) < len(wanted):
        reply = await stub.ListJobs(
            pb.ListJobsRequest(page_size=1000, page_token=token),
            timeout=CALL_TIMEOUT_S,
            metadata=metadata,
        )
        found |= {job.id: job for job in reply.jobs if job.id in wanted}
        token = reply.next_page_token
        if not token:
            break
    return found


def state_counts(jobs: Sequence[job_pb2.Job]) -> Counter[str]:
    return Counter(
        job_pb2.JobState.Name(job.status).removeprefix("JOB_STATE_").lower() for job in jobs
    )


def run_seconds(job: job_pb2.Job) -> float:
    """Create to completion, by the server's clock."""
    return (job.complete_time.ToNanoseconds() - job.create_time.ToNanoseconds()) / 1e9
