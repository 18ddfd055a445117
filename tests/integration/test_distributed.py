"""Issue 4: the distributed set-up as separate OS processes on the machine's real PostgreSQL
and Redis, an S3 server (moto) and the Replicate emulator: two API processes, two workers."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aioboto3
import grpc
import httpx
import pytest
from google.protobuf import struct_pb2

from mediagen.config import S3Settings
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.processes import Cluster, Proc

TOKEN = "r8_distributed_test_token"
LEASE_S = 4.0
RECONCILE_S = 1.0
LATENCY_S = 2.0


@dataclass
class Deployment:
    cluster: Cluster
    apis: list[str]
    workers: list[Proc]
    emulator_url: str
    s3: S3Settings

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.emulator_url}/_emulator/stats").json()
        return stats

    def active(self) -> int:
        """Predictions running at the emulator right now."""
        return int(self.stats()["active"])


@pytest.fixture
def deployment(
    cluster: Cluster, postgres_url: str, s3_settings: S3Settings
) -> Iterator[Deployment]:
    emulator_url = cluster.distributed(postgres_url, s3_settings, token=TOKEN)
    cluster.env |= {
        "MEDIAGEN_EMULATOR_LATENCY_S": str(LATENCY_S),
        "MEDIAGEN_LEASE_S": str(LEASE_S),
        # Shorter than the lease, as in production (30 s each): a killed worker's unanswered
        # create has settled by the time its job comes back, so nothing waits for it.
        "MEDIAGEN_AMBIGUOUS_SETTLE_S": "1",
        "MEDIAGEN_RECONCILE_INTERVAL_S": str(RECONCILE_S),
        "MEDIAGEN_POLL_INTERVAL_S": "0.2",
        "MEDIAGEN_POLL_INTERVAL_MAX_S": "0.5",
        "MEDIAGEN_RETRY_BASE_S": "0.2",
        "MEDIAGEN_RETRY_MAX_S": "1",
        "MEDIAGEN_SHUTDOWN_GRACE_S": "1",
        "MEDIAGEN_DB_POOL_SIZE": "5",
        "MEDIAGEN_DB_MAX_OVERFLOW": "5",
    }
    emulator = cluster.emulator()
    apis = [cluster.api(f"api{i}") for i in range(2)]
    workers = [cluster.worker(f"worker{i}") for i in range(2)]
    for server in (emulator, *apis, *workers):
        server.ready()
    yield Deployment(
        cluster,
        [api.address for api in apis],
        [worker.proc for worker in workers],
        emulator_url,
        s3_settings,
    )


async def submit_and_watch(
    deployment: Deployment, count: int, prefix: str, *, latency_s: float | None = None
) -> list[job_pb2.Job]:
    """Submit ``count`` jobs alternately to each API and watch each from the other one."""
    extra = struct_pb2.Struct()
    if latency_s is not None:
        extra.update({"emulator_latency_s": latency_s})
    channels = [grpc.aio.insecure_channel(target) for target in deployment.apis]
    stubs = [pb_grpc.MediaGenerationServiceStub(c) for c in channels]
    try:

        async def one(i: int) -> job_pb2.Job:
            request = pb.GenerateMediaRequest(
                prompt=f"{prefix} {i}",
                parameters=job_pb2.GenerationParameters(width=64, height=64, extra_input=extra),
            )
            job = (await stubs[i % 2].GenerateMedia(request, timeout=30)).job
            last = None
            call = stubs[(i + 1) % 2].WatchJob(pb.WatchJobRequest(id=job.id), timeout=180)
            async for response in call:
                last = response.event.job
            assert last is not None
            return last

        return await asyncio.gather(*(one(i) for i in range(count)))
    finally:
        for channel in channels:
            await channel.close()


async def s3_keys(s3: S3Settings) -> list[str]:
    session = aioboto3.Session()
    async with session.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=s3.region,
    ) as client:
        keys: list[str] = []
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=s3.bucket):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys


async def test_two_apis_two_workers_200_jobs(deployment: Deployment) -> None:
    jobs = await submit_and_watch(deployment, 200, "fleet")
    assert [job.status for job in jobs] == [job_pb2.JOB_STATE_SUCCEEDED] * 200
    media = [m for job in jobs for m in job.media]
    assert len(media) == 200

    async with httpx.AsyncClient(timeout=30) as http:
        sem = asyncio.Semaphore(20)

        async def check(m: object) -> None:
            async with sem:
                body = (await http.get(m.url)).raise_for_status().content  # type: ignore[attr-defined]
                assert hashlib.sha256(body).hexdigest() == m.sha256  # type: ignore[attr-defined]

        await asyncio.gather(*(check(m) for m in media))

    keys = await s3_keys(deployment.s3)
    assert len(keys) == len(set(keys)) == 200
    assert sorted(keys) == sorted(f"{m.job_id}/0.png" for m in media)
    assert deployment.stats()["predictions"] == 200  # one prediction per job


async def test_killed_worker_loses_no_job_and_pays_once(deployment: Deployment) -> None:
    async def run() -> list[job_pb2.Job]:
        return await submit_and_watch(deployment, 40, "survivor")

    task = asyncio.create_task(run())
    # Kill a worker while it holds running jobs.
    deadline = time.monotonic() + 20
    while deployment.active() < 10 and time.monotonic() < deadline:  # noqa: ASYNC110 (polling another process)
        await asyncio.sleep(0.1)
    victim = deployment.workers[0]
    victim.kill()
    killed_at = time.monotonic()
    jobs = await asyncio.wait_for(task, timeout=120)
    finished_after = time.monotonic() - killed_at

    assert [job.status for job in jobs] == [job_pb2.JOB_STATE_SUCCEEDED] * 40
    # Orphaned jobs came back once their lease expired (plus a reconciler pass), resuming the
    # predictions they had: the emulator saw exactly one per job.
    assert deployment.stats()["predictions"] == 40
    resumed = [job for job in jobs if job.attempt > 1]
    assert resumed, "the killed worker held no job"
    assert finished_after < LEASE_S + RECONCILE_S + LATENCY_S + 10


async def test_sigterm_drains_a_worker_and_hands_its_jobs_on(deployment: Deployment) -> None:
    task = asyncio.create_task(submit_and_watch(deployment, 20, "drained", latency_s=5.0))
    deadline = time.monotonic() + 20
    while deployment.active() < 10 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    leaving = deployment.workers[0]
    started = time.monotonic()
    assert leaving.stop(timeout_s=20) == 0, leaving.output()
    assert time.monotonic() - started < 10  # grace (1 s) plus the hand-back, not the jobs' 5 s
    jobs = await asyncio.wait_for(task, timeout=120)
    assert [job.status for job in jobs] == [job_pb2.JOB_STATE_SUCCEEDED] * 20
    assert deployment.stats()["predictions"] == 20  # handed-back jobs resumed their predictions
    assert "running→pending (worker stopping)" in leaving.output()


async def test_many_watchers_per_job_in_two_api_processes(deployment: Deployment) -> None:
    """25 WatchJob streams per API process on each of 3 jobs: the Redis bus hands one parsed
    event to every local watcher, and each still gets the final event with working URLs."""
    extra = struct_pb2.Struct()
    extra.update({"emulator_latency_s": 3.0})  # every watcher is live before the jobs end
    channels = [grpc.aio.insecure_channel(target) for target in deployment.apis]
    stubs = [pb_grpc.MediaGenerationServiceStub(c) for c in channels]
    try:
        jobs = [
            (
                await stubs[0].GenerateMedia(
                    pb.GenerateMediaRequest(
                        prompt=f"watched {i}",
                        parameters=job_pb2.GenerationParameters(
                            width=64, height=64, extra_input=extra
                        ),
                    ),
                    timeout=30,
                )
            ).job
            for i in range(3)
        ]

        async def watch(stub: pb_grpc.MediaGenerationServiceStub, job_id: str) -> job_pb2.Job:
            last = None
            async for response in stub.WatchJob(pb.WatchJobRequest(id=job_id), timeout=120):
                last = response.event.job
            assert last is not None
            return last

        finals = await asyncio.gather(
            *(watch(stub, job.id) for job in jobs for stub in stubs for _ in range(25))
        )
    finally:
        for channel in channels:
            await channel.close()

    assert len(finals) == 150
    assert {final.status for final in finals} == {job_pb2.JOB_STATE_SUCCEEDED}
    async with httpx.AsyncClient(timeout=30) as http:
        sem = asyncio.Semaphore(10)

        async def check(final: job_pb2.Job) -> None:
            (media,) = final.media
            async with sem:
                body = (await http.get(media.url)).raise_for_status().content
            assert hashlib.sha256(body).hexdigest() == media.sha256

        await asyncio.gather(*(check(final) for final in finals))
