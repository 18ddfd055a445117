"""Benchmark: one large output copied to S3 by a real worker process; watch the worker's memory.

Everything runs as separate OS processes on loopback, configured through the environment as in
production: a moto S3 server, the Replicate emulator, one ``mediagen api`` and one ``mediagen
worker``, on the machine's PostgreSQL (a fresh database, dropped at the end) and Redis (a fresh
stream key, deleted at the end). A small warm-up job goes through the whole path first, so
imports, pools and connections are in the baseline. Then one job asks the emulator for a single
output of ``--size-mib`` (a WAV generated while it streams), and the worker's ``VmRSS`` is
sampled every 50 ms from ``/proc/<pid>/status`` until the job has SUCCEEDED; its ``VmHWM``,
reset after the warm-up where the kernel allows, catches peaks between samples. The stored
object is checked with HeadObject, and the job's media must carry its size and sha256.

The target (issue 4) is growth under 64 MiB whatever the size: the worker streams the output
(provider download -> inspector -> multipart upload) and holds about one part at a time.

Usage (from the repository root, with PostgreSQL and Redis running as for the tests)::

    python bench/worker_s3_rss.py                  # 1 GiB
    python bench/worker_s3_rss.py --size-mib 256 --part-size-mib 5

PostgreSQL comes from MEDIAGEN_TEST_POSTGRES as in the tests (default
``postgresql+asyncpg://postgres@127.0.0.1:5432``). Exits 1 on FAIL, 2 if the set-up broke.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aioboto3
import asyncpg
import grpc
import redis
from google.protobuf import struct_pb2

# The process helpers live with the test fixtures; this script runs from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mediagen.config import Settings
from mediagen.jobs.migrate import upgrade
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from mediagen.worker.broker import CONSUMER_GROUP
from tests.fixtures.database import POSTGRES_BASE
from tests.fixtures.processes import (
    Cluster,
    Proc,
    distributed_env,
    free_port,
    wait_for_grpc_health,
    wait_for_http,
)
from tests.fixtures.s3 import make_s3_settings, running_moto_server

MiB = 1024 * 1024
TOKEN = "r8_worker_rss_bench_token"
SAMPLE_INTERVAL_S = 0.05
# Well below one S3 part: a part-sized warm-up would leave a freed part's worth of heap in the
# baseline, and the growth would then hide the part buffer (see bench/s3_copy_rss.py).
WARM_UP_BYTES = 256 * 1024
_TERMINAL = (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELED)


def extra_input(size_bytes: int) -> struct_pb2.Struct:
    extra = struct_pb2.Struct()
    extra.update({"emulator_output_bytes": size_bytes})
    return extra


# ---- the worker's memory -----------------------------------------------------------------------


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux 4.0+); False where not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


class RssSampler:
    """Samples a process's VmRSS on a thread, so a busy gRPC wait cannot stretch the interval."""

    def __init__(self, pid: int, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = status_kib(self.pid, "VmRSS")
            except (OSError, RuntimeError):
                return  # the worker is gone; the job wait reports why
            self.peak_kib = max(self.peak_kib, rss)
            self.samples += 1
            self._stop.wait(self.interval_s)


# ---- resources, each removed at the end ----------------------------------------------------------


async def _admin(sql: str) -> None:
    raw = POSTGRES_BASE.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(f"{raw}/postgres", timeout=10)
    try:
        await conn.execute(sql, timeout=30)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, migrated PostgreSQL database; dropped (connections and all) at the end."""
    name = f"mediagen_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        url = f"{POSTGRES_BASE}/{name}"
        asyncio.run(upgrade(url))
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def fresh_queue(redis_url: str) -> Iterator[str]:
    """A queue name nobody else uses; its stream (and the broker's autoclaim lock) go at the end."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    queue = f"mediagen-bench-{uuid.uuid4().hex[:8]}"
    with contextlib.closing(client):
        client.ping()  # fail here, clearly, rather than as a worker that cannot start
        try:
            yield queue
        finally:
            try:
                client.delete(queue, f"autoclaim:{CONSUMER_GROUP}:{queue}")
            except redis.RedisError as exc:  # must not hide the error that got us here
                print(f"could not delete Redis key {queue}: {exc}", file=sys.stderr)


@contextlib.contextmanager
def running(cluster: Cluster) -> Iterator[Cluster]:
    """Stop every process at the end; on an error, show the tail of their logs first."""
    try:
        yield cluster
    except BaseException:
        for proc in cluster.procs:
            tail = "\n".join(proc.output().splitlines()[-30:])
            print(f"---- {proc.name} (last lines) ----\n{tail}", file=sys.stderr)
        raise
    finally:
        cluster.stop_all()


@dataclass
class Deployment:
    api: str  # gRPC target
    worker: Proc
    bucket: str
    s3_url: str


def deploy(
    cluster: Cluster, *, database_url: str, redis_url: str, queue: str, s3_url: str, args: Args
) -> Deployment:
    bucket = make_s3_settings(s3_url).bucket
    emulator_port = free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    cluster.env |= distributed_env(
        database_url=database_url,
        redis_url=redis_url,
        s3_url=s3_url,
        bucket=bucket,
        emulator_port=emulator_port,
        token=TOKEN,
    )
    cluster.env |= {
        "MEDIAGEN_QUEUE_NAME": queue,
        # The prediction itself is not what is measured: make it quick, and poll it often.
        "MEDIAGEN_EMULATOR_LATENCY_S": "0.2",
        "MEDIAGEN_POLL_INTERVAL_S": "0.1",
        "MEDIAGEN_POLL_INTERVAL_MAX_S": "0.2",
        # The default limit is 2 GiB; a larger --size-mib must not fail as "too large".
        "MEDIAGEN_MAX_OUTPUT_BYTES": str(max(Settings().max_output_bytes, args.size_mib * MiB)),
        "MEDIAGEN_JOB_TIMEOUT_S": str(args.timeout_s),
        "MEDIAGEN_SHUTDOWN_GRACE_S": "3",
    }
    if args.part_size_mib:
        cluster.env["S3_PART_SIZE_BYTES"] = str(args.part_size_mib * MiB)
    # The model is left to the service's default (REPLICATE_MODEL and MEDIAGEN_ALLOWED_MODELS
    # are not inherited, see base_env): the emulator serves any model name.
    emulator = cluster.start("emulator", "emulator")
    wait_for_http(f"{emulator_url}/_emulator/health", emulator)
    api_port = free_port()
    api = cluster.start("api", "api", env={"MEDIAGEN_GRPC_PORT": str(api_port)})
    wait_for_grpc_health(f"127.0.0.1:{api_port}", api)
    health_port = free_port()
    worker_env = {"MEDIAGEN_WORKER_HEALTH_PORT": str(health_port)}
    worker = cluster.start("worker", "worker", env=worker_env)
    wait_for_grpc_health(f"127.0.0.1:{health_port}", worker)
    return Deployment(f"127.0.0.1:{api_port}", worker, bucket, s3_url)


def base_env() -> dict[str, str]:
    """This environment without any mediagen configuration a developer may have exported."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MEDIAGEN_", "S3_", "REPLICATE_"))
        and key not in {"DATABASE_URL", "REDIS_URL", "STORAGE_TYPE", "DEBUG", "SECRET_KEY"}
    }
    return env | {"PYTHONUNBUFFERED": "1"}


# ---- one job -------------------------------------------------------------------------------------


async def run_job(
    stub: pb_grpc.MediaGenerationServiceStub, size: int, timeout_s: float
) -> job_pb2.Job:
    """Submit a job with one output of ``size`` bytes, watch it to its end, return it."""
    request = pb.GenerateMediaRequest(
        prompt=f"worker rss benchmark {size} bytes",
        parameters=job_pb2.GenerationParameters(extra_input=extra_input(size)),
    )
    job = (await stub.GenerateMedia(request, timeout=30)).job
    async for response in stub.WatchJob(pb.WatchJobRequest(id=job.id), timeout=timeout_s):
        if response.event.job.status in _TERMINAL:
            break
    # GetJob rather than the last event: the media as stored, with fresh URLs.
    return (await stub.GetJob(pb.GetJobRequest(id=job.id), timeout=30)).job


def check_job(job: job_pb2.Job, size: int) -> list[str]:
    """What is wrong with a finished job (empty: nothing)."""
    if job.status != job_pb2.JOB_STATE_SUCCEEDED:
        state = job_pb2.JobState.Name(job.status)
        return [f"job {job.id} ended {state}: {job.error.message or 'no error'}"]
    problems = []
    if len(job.media) != 1:
        problems.append(f"job {job.id} has {len(job.media)} media, expected 1")
    for media in job.media:
        if media.size_bytes != size:
            problems.append(f"Media.size_bytes {media.size_bytes} != {size}")
        if len(media.sha256) != 64:
            problems.append(f"Media.sha256 not set ({media.sha256!r})")
    return problems


async def stored_sizes(deployment: Deployment, job_id: str) -> dict[str, int]:
    """Every object under the job's prefix, with its size as HeadObject reports it."""
    session = aioboto3.Session()
    async with session.client(
        "s3",
        endpoint_url=deployment.s3_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ) as client:
        listed = await client.list_objects_v2(Bucket=deployment.bucket, Prefix=f"{job_id}/")
        sizes = {}
        for item in listed.get("Contents", []):
            head = await client.head_object(Bucket=deployment.bucket, Key=item["Key"])
            sizes[item["Key"]] = int(head["ContentLength"])
        return sizes


@dataclass
class Figures:
    size_bytes: int
    seconds: float
    baseline_kib: int
    sampled_peak_kib: int
    hwm_kib: int | None  # None: VmHWM could not be reset, so it would include start-up
    samples: int
    problems: list[str]

    @property
    def peak_kib(self) -> int:
        return max(self.sampled_peak_kib, self.hwm_kib or 0)

    @property
    def growth_mib(self) -> float:
        return (self.peak_kib - self.baseline_kib) / 1024

    def report(self) -> str:
        mib = self.size_bytes / MiB
        hwm = "not resettable" if self.hwm_kib is None else f"{self.hwm_kib / 1024:.1f} MiB"
        sampled = self.sampled_peak_kib / 1024
        lines = [
            f"size        {mib:.0f} MiB ({self.size_bytes} bytes), one WAV output",
            f"wall time   {self.seconds:.2f} s submit -> SUCCEEDED, {mib / self.seconds:.1f} MiB/s",
            f"worker RSS  baseline {self.baseline_kib / 1024:.1f} MiB (after warm-up)",
            f"            peak {self.peak_kib / 1024:.1f} MiB (sampled {sampled:.1f} MiB"
            f" in {self.samples} samples; VmHWM {hwm})",
            f"            growth {self.growth_mib:.1f} MiB",
        ]
        lines += [f"problem     {problem}" for problem in self.problems]
        return "\n".join(lines)


async def measure(deployment: Deployment, size: int, timeout_s: float) -> Figures:
    pid = deployment.worker.popen.pid
    async with grpc.aio.insecure_channel(deployment.api) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        warm_up = await run_job(stub, WARM_UP_BYTES, timeout_s=60)
        if problems := check_job(warm_up, WARM_UP_BYTES):
            raise RuntimeError(f"warm-up failed: {'; '.join(problems)}")
        await asyncio.sleep(1)  # let the warm-up's last writes and frees settle
        baseline = status_kib(pid, "VmRSS")
        hwm_reset = reset_peak_rss(pid)
        with RssSampler(pid) as sampler:
            started = time.perf_counter()
            job = await run_job(stub, size, timeout_s)
            seconds = time.perf_counter() - started
        hwm = status_kib(pid, "VmHWM") if hwm_reset else None
    problems = check_job(job, size)
    if job.status == job_pb2.JOB_STATE_SUCCEEDED:
        sizes = await stored_sizes(deployment, job.id)
        if list(sizes.values()) != [size]:
            problems.append(f"S3 holds {sizes} under {job.id}/, expected one object of {size}")
    return Figures(
        size_bytes=size,
        seconds=seconds,
        baseline_kib=baseline,
        sampled_peak_kib=max(sampler.peak_kib, baseline),
        hwm_kib=hwm,
        samples=sampler.samples,
        problems=problems,
    )


# ---- command line --------------------------------------------------------------------------------


@dataclass
class Args:
    size_mib: int
    part_size_mib: int | None
    max_growth_mib: float
    timeout_s: float
    redis_url: str


def parse_args(argv: list[str] | None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="output size (default 1024)")
    parser.add_argument(
        "--part-size-mib", type=int, help="S3_PART_SIZE_BYTES in MiB (default: the service's)"
    )
    parser.add_argument("--max-growth-mib", type=float, default=64.0, help="fail at this growth")
    parser.add_argument(
        "--timeout-s", type=float, default=900.0, help="give up on the big job after this long"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ns = parser.parse_args(argv)
    return Args(ns.size_mib, ns.part_size_mib, ns.max_growth_mib, ns.timeout_s, ns.redis_url)


def run(args: Args) -> Figures:
    """Set everything up, measure, and take it all down again (in reverse order)."""
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(fresh_database())
        queue = stack.enter_context(fresh_queue(args.redis_url))
        s3_url = stack.enter_context(running_moto_server())
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mediagen-bench-")))
        cluster = stack.enter_context(running(Cluster(env=base_env(), logs=logs)))
        deployment = deploy(
            cluster,
            database_url=database_url,
            redis_url=args.redis_url,
            queue=queue,
            s3_url=s3_url,
            args=args,
        )
        return asyncio.run(measure(deployment, args.size_mib * MiB, args.timeout_s))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        figures = run(args)
    except (RuntimeError, AssertionError, grpc.RpcError, OSError, redis.RedisError) as exc:
        print(f"benchmark broken: {exc}", file=sys.stderr)
        return 2
    print(figures.report())
    ok = not figures.problems and figures.growth_mib < args.max_growth_mib
    print(f"target      growth < {args.max_growth_mib:.0f} MiB: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
