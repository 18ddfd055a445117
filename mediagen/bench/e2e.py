"""``e2e``: jobs completed per second. ``--jobs`` zero-latency jobs are submitted by
``--concurrency`` callers; the figure is the jobs that SUCCEEDED over the time from the first
submission to the last completion (the server's ``complete_time``).

It measures the service's own throughput, so the deployment it starts lifts the provider's
request budget, ours and the emulator's alike: with Replicate's real one, creates alone cap
completions at 10/s per account (600 a minute).
"""

from __future__ import annotations

from collections.abc import Mapping

from mediagen.bench.calls import (
    count_final,
    fetch_jobs,
    job_request,
    metadata_for,
    run_seconds,
    state_counts,
    submit_closed,
    wait_until_final,
)
from mediagen.bench.deploy import Deployment
from mediagen.bench.measure import measured, opened
from mediagen.bench.options import BenchOptions
from mediagen.bench.report import BenchReport, at_least, below
from mediagen.bench.stats import latency, rate

#: Requests a minute, for every budget: far above anything one run can send.
UNBUDGETED_PER_MIN = "1000000"
UNBUDGETED: Mapping[str, str] = {
    name: UNBUDGETED_PER_MIN
    for name in (
        "MEDIAGEN_PROVIDER_CREATES_PER_MIN",
        "MEDIAGEN_PROVIDER_REQUESTS_PER_MIN",
        "MEDIAGEN_EMULATOR_CREATES_PER_MIN",
        "MEDIAGEN_EMULATOR_REQUESTS_PER_MIN",
    )
}


def deploy_env(options: BenchOptions) -> Mapping[str, str]:
    return {**UNBUDGETED, "MEDIAGEN_METRICS": "true" if options.metrics else "false"}


async def run(deployment: Deployment, options: BenchOptions) -> BenchReport:
    request = job_request("an e2e bench fox", latency_s=options.job_seconds)
    metadata = metadata_for(deployment.api_key)
    async with opened(deployment) as stub, measured(deployment) as meter:
        baseline = await count_final(stub, metadata)
        submitted = await submit_closed(
            stub, lambda _: request, jobs=options.jobs, concurrency=options.concurrency,
            seconds=options.seconds, metadata=metadata,
        )  # fmt: skip
        await wait_until_final(
            stub, expected=len(submitted.ids), baseline=baseline,
            timeout_s=options.seconds, metadata=metadata,
        )  # fmt: skip
        jobs = list((await fetch_jobs(stub, submitted.ids, metadata)).values())
    states = state_counts(jobs)
    done = [job for job in jobs if job.HasField("complete_time")]
    last = max((job.complete_time.ToNanoseconds() / 1e9 for job in done), default=0.0)
    makespan_s = max(0.0, last - submitted.started_at)
    completed_per_s = rate(states["succeeded"], makespan_s)
    unfinished = len(submitted.ids) - len(done)
    return BenchReport(
        scenario="e2e",
        deployment=deployment.kind,
        settings={
            "jobs": options.jobs,
            "concurrency": options.concurrency,
            "job_seconds": options.job_seconds,
            "seconds": options.seconds,
            "metrics": options.metrics,
            # A deployment the run started has the budget lifted; a --target keeps its own.
            "provider_budget": (
                "the target's own" if deployment.kind == "target" else f"{UNBUDGETED_PER_MIN}/min"
            ),
        },
        figures={
            "submitted": len(submitted.ids),
            "submit_errors": sum(submitted.errors.values()),
            "succeeded": states["succeeded"],
            "failed": states["failed"],
            "unfinished": unfinished,
            "submit_seconds": submitted.elapsed_s,
            "makespan_seconds": makespan_s,
            "completed_per_s": completed_per_s,
        },
        latencies={
            "GenerateMedia": latency(submitted.latencies_s),
            "create -> complete": latency([run_seconds(job) for job in done]),
        },
        processes=meter.figures,
        checks=[
            below("failed + unfinished = 0", states["failed"] + unfinished, 1),
            at_least("completed/s >= 250 (one worker process)", completed_per_s, 250.0),
        ],
    )
