"""``submit``: GenerateMedia calls accepted per second, closed loop (``--concurrency``
callers) or open loop (``--rate`` offered per second), and their latency.

The jobs run ``--job-seconds`` (60 by default) at the emulator, so the worker stays busy
holding and polling them while the submission path is what is measured.
"""

from __future__ import annotations

from collections.abc import Mapping

from mediagen.bench.calls import job_request, metadata_for, submit_closed, submit_open
from mediagen.bench.deploy import Deployment
from mediagen.bench.measure import measured, opened
from mediagen.bench.options import BenchOptions
from mediagen.bench.report import BenchReport, Check, at_least, below
from mediagen.bench.stats import latency, rate

DEFAULT_JOB_SECONDS = 60.0
WARM_UP_CALLS = 50  # at most; a tenth of the calls measured


def deploy_env(options: BenchOptions) -> Mapping[str, str]:
    return {"MEDIAGEN_METRICS": "true" if options.metrics else "false"}


async def run(deployment: Deployment, options: BenchOptions) -> BenchReport:
    job_seconds = options.job_seconds or DEFAULT_JOB_SECONDS
    request = job_request("a bench fox", latency_s=job_seconds)
    metadata = metadata_for(deployment.api_key)
    async with opened(deployment) as stub:
        await submit_closed(
            stub,
            lambda _: request,
            jobs=min(WARM_UP_CALLS, max(1, options.jobs // 10)),
            concurrency=8,
            seconds=10,
            metadata=metadata,
        )
        async with measured(deployment) as meter:
            if options.rate:
                result = await submit_open(
                    stub, lambda _: request, jobs=options.jobs, rate=options.rate,
                    seconds=options.seconds, metadata=metadata,
                )  # fmt: skip
            else:
                result = await submit_closed(
                    stub, lambda _: request, jobs=options.jobs, concurrency=options.concurrency,
                    seconds=options.seconds, metadata=metadata,
                )  # fmt: skip
    errors = sum(result.errors.values())
    accepted_per_s = rate(len(result.ids), result.elapsed_s)
    calls = latency(result.latencies_s)
    checks: list[Check] = [below("errors = 0", errors, 1)]
    if options.rate:
        checks.append(below("p99 < 25 ms at 500/s offered", calls.p99_ms, 25.0))
    elif deployment.kind == "embedded":
        checks.append(at_least("accepted/s >= 500 (embedded)", accepted_per_s, 500.0))
    else:
        checks.append(at_least("accepted/s >= 1000 (one API process)", accepted_per_s, 1000.0))
    settings: dict[str, object] = {
        "jobs": options.jobs,
        "seconds": options.seconds,
        ("rate" if options.rate else "concurrency"): options.rate or options.concurrency,
        "job_seconds": job_seconds,
        "metrics": options.metrics,
    }
    return BenchReport(
        scenario="submit",
        deployment=deployment.kind,
        settings=settings,
        figures={
            "calls": len(result.ids) + errors,
            "accepted": len(result.ids),
            "errors": errors,
            "seconds": result.elapsed_s,
            "accepted_per_s": accepted_per_s,
        },
        latencies={"GenerateMedia": calls},
        processes=meter.figures,
        checks=checks,
        notes=[f"{code}: {n} calls" for code, n in sorted(result.errors.items())],
    )
