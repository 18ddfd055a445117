"""``copy``: one large output copied into storage by the worker, and the worker's memory.

A small warm-up job goes through the whole path first, so imports, pools and connections are
in the baseline; then one job asks the emulator for a single streamed output of ``--size-mib``.
The worker's RSS is sampled every 100 ms and its VmHWM (reset at the start where the kernel
allows) catches peaks between samples. The target: growth under 64 MiB whatever the size, as
the output is streamed (provider download -> inspector -> storage) a part at a time.
"""

from __future__ import annotations

from collections.abc import Mapping

from mediagen.bench.calls import (
    Metadata,
    Stub,
    count_final,
    fetch_jobs,
    job_request,
    metadata_for,
    submit_closed,
    wait_until_final,
)
from mediagen.bench.deploy import Deployment
from mediagen.bench.measure import measured, opened
from mediagen.bench.options import BenchOptions, MiB
from mediagen.bench.report import BenchReport, Check, below
from mediagen.bench.stats import rate
from mediagen.config import Settings
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb

# Well below one S3 part: a part-sized warm-up would leave a freed part's worth of heap in the
# baseline, and the growth would then hide the part buffer.
WARM_UP_BYTES = 256 * 1024
WORKER_NAMES = ("worker0", "serve")
GROWTH_BOUND_MIB = 64.0


def deploy_env(options: BenchOptions) -> Mapping[str, str]:
    size = options.size_mib * MiB
    env = {"MEDIAGEN_MAX_OUTPUT_BYTES": str(max(Settings().max_output_bytes, size))}
    if options.part_size_mib:
        env["S3_PART_SIZE_BYTES"] = str(options.part_size_mib * MiB)
    return env


async def _one_job(
    stub: Stub, request: pb.GenerateMediaRequest, timeout_s: float, metadata: Metadata
) -> job_pb2.Job | None:
    baseline = await count_final(stub, metadata)
    submitted = await submit_closed(
        stub, lambda _: request, jobs=1, concurrency=1, seconds=timeout_s, metadata=metadata
    )
    if not submitted.ids:
        return None
    await wait_until_final(
        stub, expected=1, baseline=baseline, timeout_s=timeout_s, metadata=metadata
    )
    return (await fetch_jobs(stub, submitted.ids, metadata)).get(submitted.ids[0])


async def run(deployment: Deployment, options: BenchOptions) -> BenchReport:
    size = options.size_mib * MiB
    metadata = metadata_for(deployment.api_key)
    async with opened(deployment) as stub:
        warm_up = job_request("a copy warm-up", latency_s=0.2, output_bytes=WARM_UP_BYTES)
        await _one_job(stub, warm_up, options.seconds, metadata)
        request = job_request(f"a copy of {size} bytes", latency_s=0.2, output_bytes=size)
        async with measured(deployment) as meter:
            job = await _one_job(stub, request, options.seconds, metadata)
    succeeded = job is not None and job.status == job_pb2.JOB_STATE_SUCCEEDED
    stored = sum(m.size_bytes for m in job.media) if job is not None else 0
    seconds = (
        (job.complete_time.ToNanoseconds() - job.start_time.ToNanoseconds()) / 1e9
        if succeeded and job is not None
        else 0.0
    )
    checks: list[Check] = [below("bytes missing from storage = 0", abs(size - stored), 1)]
    worker = meter.of(*WORKER_NAMES)
    if worker is not None:
        checks.append(
            below(
                f"{worker.name} RSS growth < {GROWTH_BOUND_MIB:g} MiB",
                worker.rss_growth_mib,
                GROWTH_BOUND_MIB,
            )
        )
    return BenchReport(
        scenario="copy",
        deployment=deployment.kind,
        settings={
            "size_mib": options.size_mib,
            "part_size_mib": options.part_size_mib or "default",
            "seconds": options.seconds,
        },
        figures={
            "succeeded": int(succeeded),
            "stored_bytes": stored,
            "job_seconds": seconds,
            "mib_per_s": rate(stored // MiB, seconds),
        },
        processes=meter.figures,
        checks=checks,
        notes=[] if job is None or not job.HasField("error") else [job.error.message],
    )
