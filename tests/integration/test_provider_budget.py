"""One request budget for every worker: two real `mediagen worker` processes (and an API)
on PostgreSQL and the machine's Redis, against an emulator that enforces tiny per-minute limits.
Every job succeeds with one prediction, the emulator refuses nothing, and a 429 one worker sees
silences both."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest_asyncio

from mediagen.emulator import Route, RunningEmulator, Throttle
from mediagen.providers.rates import Rates
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.database import _truncate
from tests.fixtures.emulator import (
    EmulatorFactory,
    predictions_by_marker,
    small_request,
    sync_probe,
    wait_until,
)
from tests.fixtures.processes import Cluster, Proc
from tests.fixtures.redis_server import MACHINE_REDIS_URL

TOKEN = "r8_budget_test_token"
JOBS = 8
#: Two creates and four other calls a second for the whole account. The workers' buckets hold
#: one second of each; the emulator tolerates three.
CREATES_PER_MIN = 120
REQUESTS_PER_MIN = 240
PAUSE_S = 3


@dataclass
class Deployment:
    emulator: RunningEmulator
    api: pb_grpc.MediaGenerationServiceStub
    workers: list[Proc]

    def api_calls(self) -> int:
        """Calls that reached the emulator's API (file downloads are not budgeted)."""
        requests = self.emulator.emulator.stats_json()["requests"]
        return sum(n for route, n in requests.items() if route != Route.FILE.value)


@pytest_asyncio.fixture
async def deployment(
    cluster: Cluster, postgres_url: str, tmp_path: Path, emulator_factory: EmulatorFactory
) -> AsyncIterator[Deployment]:
    await _truncate(postgres_url)
    emulator = await emulator_factory(
        latency_s=1.0,
        api_token=TOKEN,
        limits=Rates(CREATES_PER_MIN, REQUESTS_PER_MIN, burst_s=3),
    )
    cluster.env |= {
        "SECRET_KEY": uuid.uuid4().hex,
        "DATABASE_URL": postgres_url,
        "REDIS_URL": MACHINE_REDIS_URL,
        "MEDIAGEN_DATA_DIR": str(tmp_path / "data"),
        "REPLICATE_API_TOKEN": TOKEN,
        "REPLICATE_BASE_URL": emulator.base_url,
        "MEDIAGEN_OUTPUT_HOSTS": emulator.host_port,
        "MEDIAGEN_PROVIDER_CREATES_PER_MIN": str(CREATES_PER_MIN),
        "MEDIAGEN_PROVIDER_REQUESTS_PER_MIN": str(REQUESTS_PER_MIN),
        "MEDIAGEN_POLL_INTERVAL_S": "0.2",
        "MEDIAGEN_POLL_INTERVAL_MAX_S": "0.5",
        "MEDIAGEN_RETRY_BASE_S": "0.2",
        "MEDIAGEN_RETRY_MAX_S": "1",
        "MEDIAGEN_SHUTDOWN_GRACE_S": "1",
        "MEDIAGEN_DB_POOL_SIZE": "3",
        "MEDIAGEN_DB_MAX_OVERFLOW": "3",
    }
    api = cluster.api()
    workers = [cluster.worker(f"worker{i}") for i in range(2)]
    # In a thread: the emulator serves on this event loop meanwhile.
    await asyncio.gather(*(asyncio.to_thread(server.ready) for server in (api, *workers)))
    async with grpc.aio.insecure_channel(api.address) as channel:
        yield Deployment(
            emulator, pb_grpc.MediaGenerationServiceStub(channel), [w.proc for w in workers]
        )
    await asyncio.to_thread(cluster.stop_all)


async def test_two_workers_share_one_budget_and_one_pause(deployment: Deployment) -> None:
    api, emulator = deployment.api, deployment.emulator.emulator
    jobs = [
        (await api.GenerateMedia(small_request(f"budget {i}"), timeout=30)).job.id
        for i in range(JOBS)
    ]
    # Both workers have predictions in flight: then one of them is throttled once.
    await wait_until(
        sync_probe(lambda: all("created" in w.output() for w in deployment.workers)),
        bool,
        timeout_s=30,
    )
    emulator.inject(Throttle(route=Route.GET, retry_after_s=PAUSE_S, times=1))
    await wait_until(sync_probe(lambda: emulator.stats.faults_applied), bool, timeout_s=30)
    throttled_at = time.monotonic()
    await asyncio.sleep(0.5)  # calls already on their way when the 429 went out may land
    calls = deployment.api_calls()
    await asyncio.sleep(PAUSE_S - 1.0)
    # Nothing from either worker while the pause lasts...
    assert deployment.api_calls() == calls
    # ...and calls again after it.
    await wait_until(sync_probe(deployment.api_calls), lambda n: n > calls, timeout_s=10)
    assert time.monotonic() - throttled_at >= PAUSE_S - 0.2

    async def state(job_id: str) -> job_pb2.Job:
        return (await api.GetJob(pb.GetJobRequest(id=job_id), timeout=30)).job

    async def states() -> list[job_pb2.Job]:
        return [await state(job_id) for job_id in jobs]

    done = await wait_until(
        states,
        lambda found: all(j.status >= job_pb2.JOB_STATE_SUCCEEDED for j in found),
        timeout_s=60,
        interval_s=0.5,
    )
    assert {j.status for j in done} == {job_pb2.JOB_STATE_SUCCEEDED}
    # Within both budgets all along: the emulator refused nothing on its own.
    assert emulator.stats_json()["throttled"] == {"create": 0, "other": 0}
    assert await predictions_by_marker(deployment.emulator.base_url, TOKEN) == dict.fromkeys(
        jobs, 1
    )
    throttled_logs = [w.output().count("every worker pauses") for w in deployment.workers]
    assert sorted(throttled_logs) == [0, 1]  # one saw the 429; the other paused all the same
