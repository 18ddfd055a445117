"""Metrics overhead: GenerateMedia submissions per second with metrics on and off.

Each round starts ``mediagen serve`` (SQLite, the bundled emulator, all on loopback) with
``MEDIAGEN_METRICS=true`` or ``false`` and submits ``--requests`` jobs over gRPC from
``--concurrency`` callers (at most ``--seconds`` per round, after a short warm-up). The worker
runs one job at a time against a slow emulated model, so the figures measure the submission
path (interceptors, validation, the insert, the enqueue) rather than job execution. Rounds
alternate on/off ``--rounds`` times each; the median of each is reported. On a shared machine
the rounds are noisy, so it also times, in-process, what metrics add to one submission (the
interceptor's counter and histogram, the submitted counter): that figure is stable.

    python bench/metrics_overhead.py                 # 3 rounds each, 1500 submissions a round
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "gen"))

from mediagen.v1 import media_generation_service_pb2 as pb  # noqa: E402
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc  # noqa: E402


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(data_dir: Path, metrics: bool) -> tuple[subprocess.Popen[bytes], str]:
    grpc_port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MEDIAGEN_", "REPLICATE_"))},
        "MEDIAGEN_DATA_DIR": str(data_dir),
        "MEDIAGEN_HOST": "127.0.0.1",
        "MEDIAGEN_GRPC_PORT": str(grpc_port),
        "MEDIAGEN_HTTP_PORT": str(_free_port()),
        "MEDIAGEN_METRICS": "true" if metrics else "false",
        "MEDIAGEN_WORKER_CONCURRENCY": "1",
        "MEDIAGEN_EMULATOR_LATENCY_S": "600",
        "MEDIAGEN_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mediagen", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return proc, f"127.0.0.1:{grpc_port}"


async def _wait_ready(target: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(target) as channel:
        while True:
            try:
                await asyncio.wait_for(channel.channel_ready(), 1)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise


async def _submit(target: str, count: int, concurrency: int, limit_s: float) -> float:
    """Submissions per second over ``count`` calls (or ``limit_s``, whichever ends first)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        budget = [count]
        done = [0]
        deadline = time.perf_counter() + limit_s

        async def caller() -> None:
            while budget[0] > 0 and time.perf_counter() < deadline:
                budget[0] -= 1
                await stub.GenerateMedia(pb.GenerateMediaRequest(prompt="a bench fox"), timeout=30)
                done[0] += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return done[0] / (time.perf_counter() - started)


def _round(metrics: bool, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory(prefix="mediagen-bench-") as data:
        proc, target = _start(Path(data), metrics)
        try:
            asyncio.run(_wait_ready(target))
            asyncio.run(_submit(target, 100, args.concurrency, 10))  # warm-up
            return asyncio.run(_submit(target, args.requests, args.concurrency, args.seconds))
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def per_submission_us(calls: int = 200_000) -> float:
    """Microseconds the metric updates of one GenerateMedia cost in this process."""
    from mediagen.metrics import definitions as m

    method = "/mediagen.v1.MediaGenerationService/GenerateMedia"
    started = time.perf_counter()
    for _ in range(calls):
        begun = time.perf_counter()
        m.GRPC_LATENCY.labels(method).observe(time.perf_counter() - begun)
        m.GRPC_REQUESTS.labels(method, "OK").inc()
        m.JOBS_SUBMITTED.labels("stability-ai/sdxl").inc()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"metric updates per submission: {per_submission_us():.2f} µs", flush=True)
    results: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for metrics in (True, False):
            rate = _round(metrics, args)
            results[metrics].append(rate)
            print(f"metrics {'on ' if metrics else 'off'}: {rate:8.1f} submissions/s", flush=True)
    on, off = statistics.median(results[True]), statistics.median(results[False])
    print(f"on:  {', '.join(f'{r:.1f}' for r in results[True])}")
    print(f"off: {', '.join(f'{r:.1f}' for r in results[False])}")
    print(
        f"median: on {on:.1f}/s, off {off:.1f}/s; metrics cost {100 * (off - on) / off:+.1f}% "
        f"({args.rounds} rounds each, {args.requests} submissions, {args.concurrency} callers)"
    )


if __name__ == "__main__":
    main()
