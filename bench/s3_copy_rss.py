"""Benchmark: copy a large HTTP download through the inspector into S3 and watch our memory.

The path is the worker's: an httpx streaming download from a local server (a separate process
streaming a PNG header and noise) -> ``inspect_stream`` -> ``S3Storage.put_stream`` on a moto
server (also a separate process, so the objects it keeps in memory are not counted here).
Memory is this process's peak RSS (``VmHWM``, reset after warm-up through
``/proc/self/clear_refs``) against its RSS before the copy. The target is growth under 64 MiB
whatever the size, since at most one part is held in memory.

Usage (from the repository root)::

    python bench/s3_copy_rss.py                 # 1 GiB
    python bench/s3_copy_rss.py --size-mib 256 --part-size-mib 5
    python bench/s3_copy_rss.py --endpoint-url http://127.0.0.1:9000   # an existing MinIO

Exits 1 when the growth reaches ``--max-growth-mib``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import http.server
import multiprocessing
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx

# The moto helpers live with the test fixtures; this script runs from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mediagen.media import MediaInfo, inspect_stream
from mediagen.storage.s3 import S3Storage
from tests.fixtures.s3 import make_s3_settings, running_moto_server

MiB = 1024 * 1024
BLOCK_BYTES = MiB
# A PNG signature and IHDR (4096 x 4096, RGB): the inspector sees an image, then noise.
PNG_HEAD = bytes.fromhex("89504e470d0a1a0a0000000d494844520000100000001000080200000000000000")


def source_bytes(size: int) -> Iterator[bytes]:
    """The deterministic source: the PNG head, then one random block repeated, cut to ``size``."""
    block = PNG_HEAD + random.Random(1234).randbytes(BLOCK_BYTES - len(PNG_HEAD))
    sent = 0
    while sent < size:
        piece = block[: size - sent]
        sent += len(piece)
        yield piece


class _SourceHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        size = int(parse_qs(urlparse(self.path).query)["size"][0])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        for piece in source_bytes(size):
            self.wfile.write(piece)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: one line per request would only clutter the figures."""


def _serve_source(conn: Connection) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SourceHandler)
    conn.send(server.server_address[1])
    server.serve_forever()


@contextlib.contextmanager
def source_server() -> Iterator[str]:
    """The download source in its own process (spawned: nothing of ours is copied into it)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve_source, args=(child,), daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{parent.recv()}/"
    finally:
        process.terminate()
        process.join(5)


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


async def sample_rss(peak: list[int], interval_s: float = 0.01) -> None:
    """Keep ``peak[0]`` at the highest VmRSS seen: a cross-check of VmHWM."""
    while True:
        peak[0] = max(peak[0], _status_kib("VmRSS"))
        await asyncio.sleep(interval_s)


@dataclass
class Figures:
    size_bytes: int
    seconds: float
    baseline_kib: int
    peak_kib: int
    sampled_peak_kib: int
    hwm_reset: bool
    mime_type: str
    sha256_ok: bool

    @property
    def growth_mib(self) -> float:
        return (self.peak_kib - self.baseline_kib) / 1024

    def report(self) -> str:
        mib = self.size_bytes / MiB
        return "\n".join(
            [
                f"size        {mib:.0f} MiB ({self.size_bytes} bytes), {self.mime_type}",
                f"time        {self.seconds:.2f} s, {mib / self.seconds:.1f} MiB/s",
                f"sha256      {'matches the source' if self.sha256_ok else 'MISMATCH'}",
                f"RSS base    {self.baseline_kib / 1024:.1f} MiB",
                f"RSS peak    {self.peak_kib / 1024:.1f} MiB (VmHWM"
                f"{'' if self.hwm_reset else ', not reset: includes start-up'}); "
                f"sampled {self.sampled_peak_kib / 1024:.1f} MiB",
                f"RSS growth  {self.growth_mib:.1f} MiB",
            ]
        )


async def copy_once(http: httpx.AsyncClient, storage: S3Storage, url: str, key: str) -> MediaInfo:
    """One download -> inspect -> upload, as the worker does it."""
    async with http.stream("GET", url) as response:
        response.raise_for_status()
        size = int(response.headers["content-length"])
        stream = await inspect_stream(response.aiter_bytes(), max_bytes=size)
        await storage.put_stream(key, stream, content_type=stream.format.mime_type)
    return stream.result()


async def measure(endpoint_url: str, source_url: str, size: int, part_size: int) -> Figures:
    storage = S3Storage(make_s3_settings(endpoint_url, part_size_bytes=part_size))
    await storage.start()
    try:
        async with httpx.AsyncClient(timeout=None) as http:
            # Warm-up through the whole path, so one-time loads are in the baseline. It is kept
            # far below one part: a part-sized warm-up would leave a freed part's worth of heap
            # in the baseline, and the growth would hide the part buffer.
            await copy_once(http, storage, f"{source_url}?size={64 * 1024}", "bench/warm-up")
            baseline = _status_kib("VmRSS")
            hwm_reset = reset_peak_rss()
            sampled = [baseline]
            sampler = asyncio.create_task(sample_rss(sampled))
            started = time.perf_counter()
            info = await copy_once(http, storage, f"{source_url}?size={size}", "bench/big.png")
            seconds = time.perf_counter() - started
            peak = _status_kib("VmHWM")
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
    finally:
        await storage.close()
    expected = hashlib.sha256()
    for piece in source_bytes(size):
        expected.update(piece)
    return Figures(
        size_bytes=info.size_bytes,
        seconds=seconds,
        baseline_kib=baseline,
        peak_kib=peak if hwm_reset else max(peak, sampled[0]),
        sampled_peak_kib=sampled[0],
        hwm_reset=hwm_reset,
        mime_type=info.mime_type,
        sha256_ok=info.sha256 == expected.hexdigest(),
    )


@contextlib.contextmanager
def s3_endpoint(endpoint_url: str | None) -> Iterator[str]:
    if endpoint_url:
        yield endpoint_url
    else:
        with running_moto_server() as url:
            yield url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="bytes to copy (default 1024)")
    parser.add_argument("--part-size-mib", type=int, default=8, help="multipart part size")
    parser.add_argument("--endpoint-url", help="an existing S3 server (default: start moto)")
    parser.add_argument("--max-growth-mib", type=float, default=64.0, help="fail at this growth")
    args = parser.parse_args(argv)
    with source_server() as source_url, s3_endpoint(args.endpoint_url) as endpoint_url:
        figures = asyncio.run(
            measure(endpoint_url, source_url, args.size_mib * MiB, args.part_size_mib * MiB)
        )
    print(figures.report())
    ok = figures.sha256_ok and figures.growth_mib < args.max_growth_mib
    print(f"target      growth < {args.max_growth_mib:.0f} MiB: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
