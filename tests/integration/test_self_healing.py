"""Issue 8 (parts 1, 2 and 3) with real processes: `mediagen api` and two `mediagen worker`s on
the machine's PostgreSQL, an S3 server (moto), the emulator and a PRIVATE redis-server that the
tests stop, restart empty and tamper with (never the machine's own). Workers outlive Redis,
a second `mediagen serve` on taken ports refuses to start, and the logs tell the truth."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import httpx
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mediagen.config import S3Settings
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.emulator import small_request
from tests.fixtures.processes import (
    Cluster,
    Proc,
    free_port,
    wait_for_grpc_health,
    wait_for_http,
)
from tests.fixtures.redis_server import PrivateRedis

TOKEN = "r8_self_healing_test_token"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Worker:
    proc: Proc
    health: str  # its health port's target

    @property
    def owner(self) -> str:
        """The lease owner name it announced."""
        match = re.search(r"^worker (\S+) consuming", self.proc.output(), re.MULTILINE)
        assert match is not None, self.proc.output()
        return match[1]


@dataclass
class Fleet:
    cluster: Cluster
    redis: PrivateRedis
    api: str
    workers: list[Worker]
    emulator_url: str
    postgres_url: str

    def active(self) -> int:
        """Predictions running at the emulator right now."""
        return int(httpx.get(f"{self.emulator_url}/_emulator/stats").json()["active"])

    async def holders(self) -> dict[str, str | None]:
        """Lease owner by job id, from the database."""
        conn = await asyncpg.connect(self.postgres_url.replace("+asyncpg", ""))
        try:
            rows = await conn.fetch("SELECT id, lease_owner FROM jobs")
        finally:
            await conn.close()
        return {row["id"]: row["lease_owner"] for row in rows}


@pytest.fixture
def fleet(
    private_redis: PrivateRedis, cluster: Cluster, postgres_url: str, s3_settings: S3Settings
) -> Iterator[Fleet]:
    # Redis first: it is stopped after the processes, which then never see it go.
    emulator_url = cluster.distributed(
        postgres_url, s3_settings, token=TOKEN, redis_url=private_redis.url
    )
    cluster.env |= {
        "MEDIAGEN_EMULATOR_LATENCY_S": "1",
        "MEDIAGEN_LEASE_S": "2",
        "MEDIAGEN_RECONCILE_INTERVAL_S": "0.5",
        "MEDIAGEN_POLL_INTERVAL_S": "0.2",
        "MEDIAGEN_POLL_INTERVAL_MAX_S": "0.5",
        "MEDIAGEN_SHUTDOWN_GRACE_S": "1",
        "MEDIAGEN_DB_POOL_SIZE": "3",
        "MEDIAGEN_DB_MAX_OVERFLOW": "3",
    }
    emulator, api = cluster.emulator(), cluster.api()
    workers = [cluster.worker(f"worker{i}") for i in range(2)]
    for server in (emulator, api, *workers):
        server.ready()
    yield Fleet(
        cluster,
        private_redis,
        api.address,
        [Worker(w.proc, w.address) for w in workers],
        emulator_url,
        postgres_url,
    )


@pytest.fixture
async def stub(fleet: Fleet) -> AsyncIterator[pb_grpc.MediaGenerationServiceStub]:
    async with grpc.aio.insecure_channel(fleet.api) as channel:
        yield pb_grpc.MediaGenerationServiceStub(channel)


async def watch_to_end(stub: pb_grpc.MediaGenerationServiceStub, job_id: str) -> job_pb2.Job:
    """The job's last state, over one WatchJob stream."""
    last = None
    async for response in stub.WatchJob(pb.WatchJobRequest(id=job_id), timeout=120):
        last = response.event.job
    assert last is not None
    return last


async def health(target: str) -> int | None:
    """The overall health a worker reports; None when it does not answer."""
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1
            )
        except grpc.aio.AioRpcError:
            return None
    return int(reply.status)


async def until(probe: object, timeout_s: float, what: str) -> None:
    """Poll the async ``probe`` (returning bool) until true; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await probe():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {timeout_s}s: {what}")


async def holding_and_not(fleet: Fleet) -> tuple[Worker, Worker]:
    """A worker that holds a job now, and the other one (either may have taken them all)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        owners = set((await fleet.holders()).values())
        for i, worker in enumerate(fleet.workers):
            if worker.owner in owners:
                return worker, fleet.workers[1 - i]
        await asyncio.sleep(0.2)
    raise AssertionError("no worker holds a job")


def assert_alive(fleet: Fleet) -> None:
    for worker in fleet.workers:
        assert worker.proc.popen.poll() is None, f"{worker.proc.name} exited:\n" + (
            worker.proc.output()
        )


async def test_workers_outlive_redis_restarting_empty(
    fleet: Fleet, stub: pb_grpc.MediaGenerationServiceStub
) -> None:
    before = [(await stub.GenerateMedia(small_request(f"before {i}", 6.0))).job for i in range(4)]
    watching = [asyncio.create_task(watch_to_end(stub, job.id)) for job in before]

    async def running() -> bool:
        return await asyncio.to_thread(fleet.active) >= 4

    await until(running, 20, "4 predictions running")
    fleet.redis.stop()
    stopped = time.monotonic()

    async def unavailable() -> bool:
        return all([await health(w.health) == NOT_SERVING for w in fleet.workers])

    await until(unavailable, 15, "both workers report NOT_SERVING")
    # Accepted while Redis is down: the reconciler sends their wake-ups later.
    during = [(await stub.GenerateMedia(small_request(f"during {i}", 1.0))).job for i in range(3)]
    # And watched from the outage on: the streams open without the event bus.
    watching_late = [asyncio.create_task(watch_to_end(stub, job.id)) for job in during]
    await asyncio.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
    assert_alive(fleet)
    fleet.redis.start()  # the same port, and empty: no stream, no consumer group

    async def serving() -> bool:
        return all([await health(w.health) == SERVING for w in fleet.workers])

    await until(serving, 20, "both workers report SERVING again")
    finished = await asyncio.wait_for(asyncio.gather(*watching), timeout=60)
    assert [job.status for job in finished] == [job_pb2.JOB_STATE_SUCCEEDED] * 4
    late = await asyncio.wait_for(asyncio.gather(*watching_late), timeout=60)
    assert [job.status for job in late] == [job_pb2.JOB_STATE_SUCCEEDED] * 3
    # And the queue works as before.
    fresh = [(await stub.GenerateMedia(small_request(f"after {i}", 0.5))).job for i in range(4)]
    after = await asyncio.wait_for(
        asyncio.gather(*(watch_to_end(stub, job.id) for job in fresh)), timeout=60
    )
    assert [job.status for job in after] == [job_pb2.JOB_STATE_SUCCEEDED] * 4
    assert_alive(fleet)
    for worker in fleet.workers:
        output = worker.proc.output()
        assert "Traceback" not in output, output
        assert "Redis unreachable" in output and "Redis reachable again" in output
        assert "lease lost" not in output  # every job finished where it ran


async def test_a_deleted_stream_is_recreated(
    fleet: Fleet, stub: pb_grpc.MediaGenerationServiceStub
) -> None:
    first = await watch_to_end(stub, (await stub.GenerateMedia(small_request("first", 0.2))).job.id)
    assert first.status == job_pb2.JOB_STATE_SUCCEEDED
    queue = fleet.cluster.env["MEDIAGEN_QUEUE_NAME"]
    client = redis.Redis.from_url(fleet.redis.url)
    try:
        assert client.delete(queue) == 1  # under both workers' blocking reads
        await asyncio.sleep(1)
        jobs = [(await stub.GenerateMedia(small_request(f"next {i}", 0.2))).job for i in range(4)]
        done = await asyncio.wait_for(
            asyncio.gather(*(watch_to_end(stub, job.id) for job in jobs)), timeout=30
        )
        assert [job.status for job in done] == [job_pb2.JOB_STATE_SUCCEEDED] * 4
        groups = client.xinfo_groups(queue)
        assert [g["name"] for g in groups] == [b"mediagen-workers"]
    finally:
        client.close()
    assert_alive(fleet)
    for worker in fleet.workers:
        output = worker.proc.output()
        assert "Traceback" not in output, output
    assert any("consumer group is gone" in w.proc.output() for w in fleet.workers), (
        "no worker noticed"
    )


def _job_of(line: str) -> str:
    found = re.search(r"job=(\S+)", line)
    assert found is not None, line
    return found[1]


async def test_a_stolen_lease_is_one_warning_naming_the_new_owner(
    fleet: Fleet, stub: pb_grpc.MediaGenerationServiceStub
) -> None:
    jobs = [(await stub.GenerateMedia(small_request(f"long {i}", 10.0))).job for i in range(4)]
    watching = [asyncio.create_task(watch_to_end(stub, job.id)) for job in jobs]
    sleeper, other = await holding_and_not(fleet)
    sleeper.proc.popen.send_signal(signal.SIGSTOP)
    try:
        held = [j for j, owner in (await fleet.holders()).items() if owner == sleeper.owner]

        async def taken_over() -> bool:
            holders = await fleet.holders()
            return all(holders[j] == other.owner for j in held)

        # Its lease (2 s) runs out and the reconciler hands its jobs to the other worker.
        await until(taken_over, 20, "the other worker took the stopped worker's jobs")
    finally:
        sleeper.proc.popen.send_signal(signal.SIGCONT)
    finished = await asyncio.wait_for(asyncio.gather(*watching), timeout=60)
    assert [job.status for job in finished] == [job_pb2.JOB_STATE_SUCCEEDED] * 4
    assert sleeper.proc.stop() == 0
    output = sleeper.proc.output()
    lines = output.splitlines()
    # On a loaded machine a claim can stall past its own 2 s lease before the worker is stopped:
    # the reconciler then wakes the same worker, which claims its job again (the next attempt)
    # and finishes it; the first attempt's warning names this worker itself. That is no theft.
    lost = [
        line for line in lines if "lease lost" in line and f"held by {sleeper.owner}" not in line
    ]
    # Every job it claimed and did not finish itself was taken from it (the held ones, and any
    # claim that committed just as it was stopped): each gets exactly one warning.
    claimed = {_job_of(line) for line in lines if "pending→running" in line}
    finished_here = {_job_of(line) for line in lines if "running→succeeded" in line}
    stolen = claimed - finished_here
    assert set(held) <= stolen, (held, output)
    assert sorted(_job_of(line) for line in lost) == sorted(stolen), output
    for line in lost:
        # Names the worker holding it now, or says it is done (the other worker may have
        # finished it before this one woke up and looked).
        assert f"held by {other.owner}" in line or "succeeded, held by no worker" in line, lost
    assert "never retrieved" not in output and "Traceback" not in output, output


async def test_a_shutdown_past_the_grace_hands_back_quietly(
    fleet: Fleet, stub: pb_grpc.MediaGenerationServiceStub
) -> None:
    jobs = [(await stub.GenerateMedia(small_request(f"slow {i}", 6.0))).job for i in range(4)]
    watching = [asyncio.create_task(watch_to_end(stub, job.id)) for job in jobs]
    leaving, staying = await holding_and_not(fleet)
    held = [j for j, owner in (await fleet.holders()).items() if owner == leaving.owner]
    began = time.monotonic()
    assert leaving.proc.stop(timeout_s=20) == 0
    assert time.monotonic() - began < 8  # the grace (1 s) and the hand-back, not the jobs' 6 s
    finished = await asyncio.wait_for(asyncio.gather(*watching), timeout=60)
    assert [job.status for job in finished] == [job_pb2.JOB_STATE_SUCCEEDED] * 4
    output = leaving.proc.output()
    handed = [line for line in output.splitlines() if "running→pending (worker stopping)" in line]
    handed_ids = [re.search(r"job=(\S+)", line)[1] for line in handed]  # type: ignore[index]
    # One INFO line per job handed back: every job it held (more may have come since).
    assert all('"level": "INFO"' in line for line in handed), output
    assert len(handed_ids) == len(set(handed_ids)), handed
    assert set(held) <= set(handed_ids) <= {job.id for job in jobs}, (held, handed)
    assert "Traceback" not in output and "CancelledError" not in output, output
    assert staying.proc.popen.poll() is None


def test_a_second_serve_on_taken_ports_exits_saying_which(cluster: Cluster, tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    ports = {"MEDIAGEN_GRPC_PORT": str(grpc_port), "MEDIAGEN_HTTP_PORT": str(http_port)}
    first = cluster.start(
        "first", "serve", env={**ports, "MEDIAGEN_DATA_DIR": str(tmp_path / "first")}
    )
    wait_for_grpc_health(f"127.0.0.1:{grpc_port}", first)
    wait_for_http(f"http://127.0.0.1:{http_port}/api/v1/health", first)

    second = cluster.start(
        "second", "serve", env={**ports, "MEDIAGEN_DATA_DIR": str(tmp_path / "second")}
    )
    assert second.popen.wait(60) == 1
    assert f"gRPC port 127.0.0.1:{grpc_port} is already in use" in second.output()
    assert "Traceback" not in second.output()

    # The HTTP port alone taken: the same refusal, naming that port.
    third = cluster.start(
        "third",
        "serve",
        env={
            **ports,
            "MEDIAGEN_GRPC_PORT": str(free_port()),
            "MEDIAGEN_DATA_DIR": str(tmp_path / "third"),
        },
    )
    assert third.popen.wait(60) == 1
    assert f"HTTP port 127.0.0.1:{http_port} is already in use" in third.output()
    # The first one never shared its port: it still answers, alone.
    assert first.popen.poll() is None
    assert httpx.get(f"http://127.0.0.1:{http_port}/api/v1/health", timeout=5).status_code == 200
