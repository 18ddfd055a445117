"""Benchmark: thousands of long jobs in ONE worker process, inside the provider's request budget.

Separate OS processes on loopback, configured through the environment as in production: the
Replicate emulator (predictions of ``--latency-s``, enforcing Replicate's per-account limits:
600 creates and 3,000 other requests a minute, 10 s bursts), one ``mediagen api`` and one
``mediagen worker`` with ``MEDIAGEN_WORKER_CONCURRENCY`` = ``--jobs``, on the machine's
PostgreSQL (a fresh database, dropped at the end) and Redis (a fresh stream key and budget
prefix). ``--jobs`` jobs are submitted at once; the script then samples the emulator's request
counters every few seconds until every job is final, and prints:

- jobs succeeded / failed (with the first errors), and the wall time;
- the emulator's 429s from its own limits (the target is 0: the worker stayed inside the budget);
- the busiest 60 s window of creates and of other API calls, next to the budget;
- predictions per job (by the marker each create carries; the target is exactly 1), and the
  attempts the worker sent back to wait, by reason (from its log).

The target (issue 10): ``--jobs 2000 --latency-s 30``, 0 failed (before the shared budget and
the sized pool: 1,676 failed with ``PoolTimeout``), requests within the budget.

Usage (from the repository root, with PostgreSQL and Redis running as for the tests)::

    python bench/provider_budget.py                        # 2,000 jobs of 30 s (~5 minutes)
    python bench/provider_budget.py --jobs 300 --latency-s 5

Exits 1 on FAIL, 2 if the set-up broke.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.worker_s3_rss import base_env, fresh_database, fresh_queue, running

from mediagen.providers.marker import Marker
from mediagen.providers.rates import Rates
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.processes import Cluster, Proc, free_port, wait_for_grpc_health, wait_for_http

TOKEN = "r8_provider_budget_bench_token"
REDIS_URL = "redis://127.0.0.1:6379/0"
SAMPLE_S = 5.0
WINDOW_S = 60.0


@dataclass
class Calls:
    """Emulator API calls (files excluded), sampled over time."""

    samples: deque[tuple[float, int, int]] = field(default_factory=deque)  # t, creates, other
    peak_creates: float = 0.0  # per minute
    peak_other: float = 0.0

    def add(self, at_s: float, requests: dict[str, int]) -> None:
        creates = requests["create"]
        other = sum(n for route, n in requests.items() if route not in {"create", "file"})
        self.samples.append((at_s, creates, other))
        # The busiest window seen so far: calls since the sample at least 60 s ago, per minute
        # of that window (samples drift apart under load, so it may be a little longer).
        while len(self.samples) > 1 and at_s - self.samples[1][0] >= WINDOW_S:
            self.samples.popleft()
        first = self.samples[0]
        span_min = (at_s - first[0]) / 60
        if at_s - first[0] >= WINDOW_S:
            self.peak_creates = max(self.peak_creates, (creates - first[1]) / span_min)
            self.peak_other = max(self.peak_other, (other - first[2]) / span_min)


async def job_counts(database_url: str) -> dict[str, int]:
    raw = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(raw, timeout=10)
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
        return {row["status"]: row["n"] for row in rows}
    finally:
        await conn.close()


async def first_errors(database_url: str) -> list[str]:
    raw = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(raw, timeout=10)
    try:
        rows = await conn.fetch("SELECT id FROM jobs WHERE status = 'failed' LIMIT 3")
    finally:
        await conn.close()
    return [row["id"] for row in rows]


async def submit(target: str, jobs: int) -> list[str]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        gate = asyncio.Semaphore(50)

        async def one(i: int) -> str:
            request = pb.GenerateMediaRequest(
                prompt=f"budget bench {i}",
                parameters=job_pb2.GenerationParameters(width=64, height=64),
            )
            async with gate:
                return (await stub.GenerateMedia(request, timeout=60)).job.id

        return await asyncio.gather(*(one(i) for i in range(jobs)))


async def failed_messages(target: str, ids: list[str]) -> list[str]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        return [
            (await stub.GetJob(pb.GetJobRequest(id=job_id), timeout=30)).job.error.message
            for job_id in ids
        ]


async def predictions_per_job(emulator_url: str) -> Counter[int]:
    """How many jobs have 1, 2, ... predictions, read through the list endpoint."""
    per_job: Counter[str] = Counter()
    url: str | None = f"{emulator_url}/v1/predictions"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        while url:
            page = (await http.get(url)).json()
            for item in page["results"]:
                marker = Marker.from_webhook_url(item.get("webhook"))
                per_job[marker.job_id if marker else "(no marker)"] += 1
            url = page["next"]
    return Counter(per_job.values())


def retries_by_reason(worker: Proc) -> Counter[str]:
    """The worker's "running→pending ... retry in Ns: <why>" lines, by the start of the why."""
    reasons: Counter[str] = Counter()
    for line in worker.output().splitlines():
        if "running→pending" in line and "retry in" in line:
            reasons[line.split(": ", 1)[-1][:60]] += 1
    return reasons


async def measure(
    args: argparse.Namespace, target: str, emulator_url: str, db: str, worker: Proc
) -> int:
    started = time.monotonic()
    ids = await submit(target, args.jobs)
    print(f"submitted {len(ids)} jobs in {time.monotonic() - started:.1f}s", flush=True)
    calls = Calls()
    counts: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=30) as http:
        deadline = started + args.timeout_s
        while time.monotonic() < deadline:
            stats = (await http.get(f"{emulator_url}/_emulator/stats")).json()
            calls.add(time.monotonic(), stats["requests"])
            counts = await job_counts(db)
            done = counts.get("succeeded", 0) + counts.get("failed", 0) + counts.get("canceled", 0)
            print(
                f"{time.monotonic() - started:6.0f}s jobs {counts} emulator "
                f"creates={stats['requests']['create']} gets={stats['requests']['get']} "
                f"throttled={stats['throttled']}",
                flush=True,
            )
            if done >= args.jobs:
                break
            await asyncio.sleep(SAMPLE_S)
        stats = (await http.get(f"{emulator_url}/_emulator/stats")).json()
    wall_s = time.monotonic() - started
    failed = counts.get("failed", 0)
    budget = Rates()
    print(f"\njobs: {args.jobs}, succeeded {counts.get('succeeded', 0)}, failed {failed}")
    print(f"wall time: {wall_s:.0f}s for predictions of {args.latency_s:g}s")
    print(f"emulator 429s from its limits: {stats['throttled']}")
    print(
        f"busiest minute (sampled every {SAMPLE_S:.0f}s): {calls.peak_creates:.0f} creates "
        f"(budget {budget.creates_per_min:.0f}), {calls.peak_other:.0f} other calls "
        f"(budget {budget.requests_per_min:.0f})"
    )
    per_job = await predictions_per_job(emulator_url)
    print(f"jobs by number of predictions: {dict(sorted(per_job.items()))}")
    print(f"attempts sent back to wait: {dict(retries_by_reason(worker)) or 0}")
    if failed:
        for message in await failed_messages(target, await first_errors(db)):
            print(f"  failed: {message}")
    ok = (
        failed == 0
        and sum(stats["throttled"].values()) == 0
        and counts.get("succeeded") == args.jobs
        and set(per_job) == {1}
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--latency-s", type=float, default=30.0)
    parser.add_argument("--timeout-s", type=float, default=900.0)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        try:
            database_url = stack.enter_context(fresh_database())
            queue = stack.enter_context(fresh_queue(REDIS_URL))
            logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="budget-bench-")))
            cluster = stack.enter_context(running(Cluster(env=base_env(), logs=logs)))
            emulator_port = free_port()
            emulator_url = f"http://127.0.0.1:{emulator_port}"
            cluster.env |= {
                "SECRET_KEY": uuid.uuid4().hex,
                "DATABASE_URL": database_url,
                "REDIS_URL": REDIS_URL,
                "MEDIAGEN_QUEUE_NAME": queue,
                "MEDIAGEN_DATA_DIR": str(logs / "data"),
                "REPLICATE_API_TOKEN": TOKEN,
                "REPLICATE_BASE_URL": emulator_url,
                "MEDIAGEN_OUTPUT_HOSTS": f"127.0.0.1:{emulator_port}",
                "MEDIAGEN_EMULATOR_PORT": str(emulator_port),
                "MEDIAGEN_EMULATOR_LATENCY_S": str(args.latency_s),
                "MEDIAGEN_WORKER_CONCURRENCY": str(args.jobs),
                "MEDIAGEN_PROVIDER_BUDGET_PREFIX": f"mediagen-bench:{uuid.uuid4().hex[:8]}:",
                "MEDIAGEN_JOB_TIMEOUT_S": str(args.timeout_s),
                "MEDIAGEN_SHUTDOWN_GRACE_S": "3",
            }
            emulator = cluster.start("emulator", "emulator")
            wait_for_http(f"{emulator_url}/_emulator/health", emulator)
            api_port = free_port()
            api = cluster.start("api", "api", env={"MEDIAGEN_GRPC_PORT": str(api_port)})
            wait_for_grpc_health(f"127.0.0.1:{api_port}", api)
            health_port = free_port()
            worker = cluster.start(
                "worker", "worker", env={"MEDIAGEN_WORKER_HEALTH_PORT": str(health_port)}
            )
            wait_for_grpc_health(f"127.0.0.1:{health_port}", worker)
        except Exception as exc:  # the set-up, not the measurement, broke
            print(f"set-up failed: {exc}", file=sys.stderr)
            return 2
        return asyncio.run(
            measure(args, f"127.0.0.1:{api_port}", emulator_url, database_url, worker)
        )


if __name__ == "__main__":
    sys.exit(main())
