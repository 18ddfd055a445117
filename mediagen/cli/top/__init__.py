"""``mediagen top``: a live terminal view of the queue, jobs per state, throughput, each
worker's load and the newest failed jobs.

Every ``--interval`` it scrapes each ``--metrics`` endpoint (Prometheus text; default: the
gateway's ``/metrics``, which the embedded ``serve`` fills with everything) and lists the newest
FAILED jobs through the API, then redraws. Throughput is the change in finished jobs between two
rounds, so the first frame comes one interval after the start (``--once`` prints just that one).
The loop is thin; reading is :mod:`.figures`, drawing :mod:`.view`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx

from mediagen.cli.base import EXIT_FAILED, EXIT_OK, UsageError
from mediagen.cli.output import code_name
from mediagen.cli.tls_options import client_tls
from mediagen.cli.top.figures import Figures, MetricsError, Scrape, combine, parse, rates
from mediagen.cli.top.view import Failure, Snapshot, as_json, render
from mediagen.client import MediagenClient, StatusError

#: Clear the screen and go home: each frame replaces the last one on a terminal.
_CLEAR = "\x1b[H\x1b[2J"


async def _scrape(http: httpx.AsyncClient, url: str) -> Scrape:
    try:
        response = await http.get(url)
    except httpx.HTTPError as exc:
        return Scrape(url, error=str(exc) or type(exc).__name__)
    if response.status_code != httpx.codes.OK:
        return Scrape(url, error=f"HTTP {response.status_code}")
    try:
        return parse(url, response.text)
    except MetricsError as exc:
        return Scrape(url, error=str(exc))


async def _read(http: httpx.AsyncClient, urls: Sequence[str]) -> Figures:
    return combine(await asyncio.gather(*(_scrape(http, url) for url in urls)))


async def _failures(client: MediagenClient, count: int) -> tuple[tuple[Failure, ...], str]:
    """The newest FAILED jobs, or why they could not be listed."""
    if count == 0:
        return (), ""
    try:
        page = await client.list(status="failed", page_size=count)
    except StatusError as exc:
        return (), f"{exc.code.name.lower()}: {exc.message}"
    failures = tuple(
        Failure(
            job.id,
            job.model,
            job.complete_time.ToDatetime(tzinfo=UTC) if job.HasField("complete_time") else None,
            f"{code_name(job.error.code)}: {job.error.message}" if job.HasField("error") else "",
        )
        for job in page.jobs
    )
    return failures, ""


def _metrics_urls(client: MediagenClient, args: argparse.Namespace) -> list[str]:
    urls: list[str] = args.metrics or []
    if urls:
        return urls
    if client.http_base_url is None:
        raise UsageError("no gateway to read /metrics from: give --metrics URL (repeatable)")
    return [f"{client.http_base_url}/metrics"]


def _draw(snapshot: Snapshot, *, as_object: bool, redraw: bool) -> None:
    if as_object:
        print(json.dumps(as_json(snapshot)), flush=True)
        return
    frame = "\n".join(render(snapshot))
    print((_CLEAR if redraw else "") + frame, flush=True)


async def top_command(client: MediagenClient, args: argparse.Namespace) -> int:
    urls = _metrics_urls(client, args)
    tls = client_tls(args)
    verify: ssl.SSLContext | bool = tls.ssl_context() if tls is not None else True
    # A scrape slower than a refresh would stall the view: give up on it and show why.
    timeout_s = min(args.timeout, max(args.interval, 1.0))
    redraw = not args.once and sys.stdout.isatty()
    async with httpx.AsyncClient(timeout=timeout_s, verify=verify) as http:
        before, then = await _read(http, urls), time.monotonic()
        while True:
            await asyncio.sleep(args.interval)
            after, (failures, failures_error) = await asyncio.gather(
                _read(http, urls), _failures(client, args.failures)
            )
            now = time.monotonic()
            snapshot = Snapshot(
                taken_at=datetime.now(UTC),
                window_s=now - then,
                figures=after,
                per_second=rates(before, after, now - then),
                failures=failures,
                failures_error=failures_error,
            )
            _draw(snapshot, as_object=args.json, redraw=redraw)
            if args.once:
                return EXIT_FAILED if after.unreachable or failures_error else EXIT_OK
            before, then = after, now
