"""``inflight``: many long predictions held by one worker process. ``--jobs`` jobs of
``--job-seconds`` (30 by default) are submitted and waited for (at most ``--seconds``); the
worker's CPU and peak RSS over the run, the provider requests counted at the emulator against
Replicate's per-minute budget, and how late each job noticed its prediction's end
(:mod:`mediagen.bench.lag`)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import httpx

from mediagen.bench.calls import (
    count_final,
    fetch_jobs,
    job_request,
    metadata_for,
    state_counts,
    submit_closed,
    wait_until_final,
)
from mediagen.bench.deploy import PRODUCTION_TIMINGS, Deployment
from mediagen.bench.lag import lags_s, read_prediction_ends
from mediagen.bench.measure import measured, opened
from mediagen.bench.options import BenchOptions
from mediagen.bench.provider import CREATES_PER_MIN, OTHERS_PER_MIN, ProviderCounter
from mediagen.bench.report import BenchReport, Check, below
from mediagen.bench.stats import Latency, latency

DEFAULT_JOB_SECONDS = 30.0
WORKER_NAMES = ("worker0", "serve")


def deploy_env(options: BenchOptions) -> Mapping[str, str]:
    # Every job in flight at once in the one worker.
    default = int(PRODUCTION_TIMINGS["MEDIAGEN_WORKER_CONCURRENCY"])
    return {"MEDIAGEN_WORKER_CONCURRENCY": str(max(default, options.jobs))}


async def run(deployment: Deployment, options: BenchOptions) -> BenchReport:
    if deployment.emulator_url is None:
        raise ValueError("inflight counts provider requests at the emulator: give its URL")
    job_seconds = options.job_seconds or DEFAULT_JOB_SECONDS
    request = job_request("an inflight bench fox", latency_s=job_seconds)
    metadata = metadata_for(deployment.api_key)
    counter = ProviderCounter(deployment.emulator_url)
    async with opened(deployment) as stub:
        baseline = await count_final(stub, metadata)
        await counter.start()
        try:
            async with measured(deployment) as meter:
                submitted = await submit_closed(
                    stub, lambda _: request, jobs=options.jobs, concurrency=options.concurrency,
                    seconds=options.seconds, metadata=metadata,
                )  # fmt: skip
                waited_s = await wait_until_final(
                    stub, expected=len(submitted.ids), baseline=baseline,
                    timeout_s=options.seconds, metadata=metadata,
                )  # fmt: skip
        finally:
            provider = await counter.stop()
        jobs = list((await fetch_jobs(stub, submitted.ids, metadata)).values())
    latencies: dict[str, Latency] = {}
    # A target's emulator may want a token this run does not have: then no lag is reported.
    with contextlib.suppress(httpx.HTTPError):
        ends = await read_prediction_ends(deployment.emulator_url, deployment.provider_token)
        latencies["prediction end -> job complete"] = latency(lags_s(jobs, ends))
    states = state_counts(jobs)
    unfinished = len(submitted.ids) - sum(states[s] for s in ("succeeded", "failed", "canceled"))
    checks: list[Check] = [
        below("failed + unfinished = 0", states["failed"] + unfinished, 1),
        below(
            f"creates/min <= {CREATES_PER_MIN}", provider.max_creates_per_min, CREATES_PER_MIN + 1
        ),
        below(
            f"other requests/min <= {OTHERS_PER_MIN}",
            provider.max_others_per_min,
            OTHERS_PER_MIN + 1,
        ),
    ]
    worker = meter.of(*WORKER_NAMES)
    if worker is not None:
        checks.append(below(f"{worker.name} cores < 0.5", worker.cores, 0.5))
        checks.append(below(f"{worker.name} peak RSS < 300 MiB", worker.rss_peak_mib, 300.0))
    return BenchReport(
        scenario="inflight",
        deployment=deployment.kind,
        settings={
            "jobs": options.jobs,
            "job_seconds": job_seconds,
            "concurrency": options.concurrency,
            "seconds": options.seconds,
            **({} if deployment.webhooks is None else {"webhooks": deployment.webhooks}),
        },
        figures={
            "submitted": len(submitted.ids),
            "submit_errors": sum(submitted.errors.values()),
            "succeeded": states["succeeded"],
            "failed": states["failed"],
            "unfinished": unfinished,
            "submit_seconds": submitted.elapsed_s,
            "run_seconds": submitted.elapsed_s + waited_s,
            "provider_creates": provider.creates,
            "provider_other_requests": provider.others,
            "max_creates_per_min": provider.max_creates_per_min,
            "max_other_requests_per_min": provider.max_others_per_min,
            "webhooks_delivered": provider.webhooks_delivered,
            "webhook_tries_failed": provider.webhook_tries_failed,
        },
        latencies=latencies,
        processes=meter.figures,
        checks=checks,
    )
