"""Gateway overhead: GetJob over HTTP/JSON (through the gateway) vs over gRPC, on loopback.

One process serves (gRPC server + gateway), one process drives HTTP, one drives gRPC; each
client runs ``--concurrency`` workers until ``--requests`` calls are done or ``--seconds``
have passed, whichever comes first, after a short warm-up. Reports requests/s and latency
percentiles, and the overhead of HTTP relative to gRPC.

    python bench/gateway_overhead.py                     # against the fake servicer
    python bench/gateway_overhead.py --http-url http://127.0.0.1:8080 \\
        --grpc-target 127.0.0.1:50051 --job-id <id>      # against a running mediagen serve

The HTTP client is a minimal keep-alive HTTP/1.1 client on raw asyncio streams, so the figures
measure the server side rather than a client library.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    transport: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int


def summarize(transport: str, latencies: list[float], seconds: float, errors: int) -> Result:
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3 if ordered else 0.0

    rps = len(ordered) / seconds if seconds else 0.0
    return Result(transport, len(ordered), seconds, rps, pct(0.5), pct(0.9), pct(0.99), errors)


async def _http_worker(
    host: str, port: int, request: bytes, deadline: float, budget: list[int], out: list[float]
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
                continue
            out.append(time.perf_counter() - start)
    finally:
        writer.close()
    return errors


async def run_http(
    url: str, job_id: str, concurrency: int, requests: int, seconds: float
) -> Result:
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    request = (
        f"GET /api/v1/jobs/{job_id} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n"
    ).encode()

    async def phase(count: int, limit_s: float) -> tuple[list[float], float, int]:
        out: list[float] = []
        budget = [count]
        start = time.perf_counter()
        deadline = start + limit_s
        workers = [
            _http_worker(host, int(port), request, deadline, budget, out)
            for _ in range(concurrency)
        ]
        errors = sum(await asyncio.gather(*workers))
        return out, time.perf_counter() - start, errors

    await phase(min(500, requests), 5)  # warm-up
    latencies, elapsed, errors = await phase(requests, seconds)
    return summarize("http", latencies, elapsed, errors)


async def run_grpc(
    target: str, job_id: str, concurrency: int, requests: int, seconds: float
) -> Result:
    import grpc

    from mediagen.v1 import media_generation_service_pb2 as svc
    from mediagen.v1 import media_generation_service_pb2_grpc as svc_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = svc_grpc.MediaGenerationServiceStub(channel)
        request = svc.GetJobRequest(id=job_id)

        async def phase(count: int, limit_s: float) -> tuple[list[float], float, int]:
            out: list[float] = []
            budget = [count]
            errors = 0
            start = time.perf_counter()
            deadline = start + limit_s

            async def worker() -> None:
                nonlocal errors
                while budget[0] > 0 and time.perf_counter() < deadline:
                    budget[0] -= 1
                    began = time.perf_counter()
                    try:
                        await stub.GetJob(request, timeout=10)
                    except grpc.aio.AioRpcError:
                        errors += 1
                        continue
                    out.append(time.perf_counter() - began)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return out, time.perf_counter() - start, errors

        await phase(min(500, requests), 5)  # warm-up
        latencies, elapsed, errors = await phase(requests, seconds)
    return summarize("grpc", latencies, elapsed, errors)


async def serve(ready_file: Path) -> None:
    """Serve the fake MediaGenerationService and the gateway until stdin closes."""
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.gateway import fake_stack, running_stack

    async with running_stack(fake_stack(any_id=True)) as stack:
        addresses = json.dumps({"http": stack.http_url, "grpc": stack.grpc_target})
        await asyncio.to_thread(ready_file.write_text, addresses)
        await asyncio.to_thread(sys.stdin.read)


def _client(args: argparse.Namespace) -> None:
    runner = run_http if args.transport == "http" else run_grpc
    target = args.http_url if args.transport == "http" else args.grpc_target
    result = asyncio.run(runner(target, args.job_id, args.concurrency, args.requests, args.seconds))
    print(json.dumps(asdict(result)))


def _run_client(
    transport: str, args: argparse.Namespace, http_url: str, grpc_target: str
) -> Result:
    cmd = [
        sys.executable,
        __file__,
        "client",
        transport,
        "--http-url",
        http_url,
        "--grpc-target",
        grpc_target,
        "--job-id",
        args.job_id,
        "--concurrency",
        str(args.concurrency),
        "--requests",
        str(args.requests),
        "--seconds",
        str(args.seconds),
    ]
    done = subprocess.run(
        cmd, check=True, capture_output=True, text=True, timeout=args.seconds + 60
    )
    return Result(**json.loads(done.stdout.strip().splitlines()[-1]))


def _report(results: list[Result], concurrency: int) -> None:
    print(f"GetJob on loopback, concurrency {concurrency}, one process per side")
    columns = ("requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors")
    widths = (10, 10, 9, 9, 9, 8)
    print("transport " + "".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))

    for r in results:
        print(
            f"{r.transport:<10}{r.requests:>10}{r.rps:>10.0f}{r.p50_ms:>9.2f}"
            f"{r.p90_ms:>9.2f}{r.p99_ms:>9.2f}{r.errors:>8}"
        )
    by = {r.transport: r for r in results}
    if "http" in by and "grpc" in by and by["grpc"].rps:
        http, grpc_ = by["http"], by["grpc"]
        print(
            f"gateway overhead: throughput x{http.rps / grpc_.rps:.2f}, "
            f"p50 +{http.p50_ms - grpc_.p50_ms:.2f} ms, p99 +{http.p99_ms - grpc_.p99_ms:.2f} ms"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP-through-gateway vs gRPC GetJob")
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "serve", "client"])
    parser.add_argument("transport", nargs="?", choices=["http", "grpc"])
    parser.add_argument("--http-url", default="", help="gateway base URL (default: start a fake)")
    parser.add_argument("--grpc-target", default="", help="gRPC HOST:PORT (with --http-url)")
    parser.add_argument("--job-id", default="job-1")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=10_000, help="per transport, at most")
    parser.add_argument("--seconds", type=float, default=20.0, help="per transport, at most")
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        asyncio.run(serve(args.ready_file))
        return 0
    if args.mode == "client":
        _client(args)
        return 0
    if args.http_url:
        results = [_run_client(t, args, args.http_url, args.grpc_target) for t in ("grpc", "http")]
    else:
        results = _with_fake_server(args)
    _report(results, args.concurrency)
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
    return 0


def _with_fake_server(args: argparse.Namespace) -> list[Result]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        server = subprocess.Popen(
            [sys.executable, __file__, "serve", "--ready-file", str(ready)],
            stdin=subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            for _ in range(300):
                if ready.exists() and ready.read_text():
                    break
                if server.poll() is not None:
                    raise RuntimeError("the benchmark server exited")
                time.sleep(0.05)
            addresses = json.loads(ready.read_text())
            return [
                _run_client(t, args, addresses["http"], addresses["grpc"]) for t in ("grpc", "http")
            ]
        finally:
            if server.stdin is not None:
                server.stdin.close()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    raise SystemExit(main())
