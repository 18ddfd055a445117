"""The client commands (`generate`, `jobs ...`, `media get`), over :mod:`mediagen.client`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TextIO

from tqdm import tqdm

from mediagen.cli import ages
from mediagen.cli.base import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
)
from mediagen.cli.output import (
    absolute_url,
    exit_code_for,
    fields,
    format_time,
    job_text,
    print_error,
    state_name,
    table,
    to_json,
)
from mediagen.cli.rerun import ListFilters, next_page_command
from mediagen.cli.tls_options import client_tls
from mediagen.client import (
    TERMINAL_STATES,
    DeadlineExceededError,
    DownloadError,
    MediagenClient,
    StatusError,
    UnavailableError,
)
from mediagen.v1 import job_pb2, media_pb2


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"{name} must be a port number, got {raw!r}") from None


def default_target() -> str:
    """``$MEDIAGEN_TARGET``, else the local server ``mediagen serve`` starts by default."""
    target = os.environ.get("MEDIAGEN_TARGET", "").strip()
    return target or f"127.0.0.1:{_env_port('MEDIAGEN_GRPC_PORT', DEFAULT_GRPC_PORT)}"


def default_http_url(target: str, *, tls: bool = False) -> str | None:
    """``$MEDIAGEN_PUBLIC_URL``, else the gateway on the gRPC target's host (embedded layout),
    over https when the gRPC target is reached over TLS."""
    public = os.environ.get("MEDIAGEN_PUBLIC_URL", "").strip()
    if public:
        return public
    host, sep, _ = target.rpartition(":")
    if not sep or "/" in host:  # a resolver URI such as dns:///host:port: no guess
        return None
    scheme = "https" if tls else "http"
    return f"{scheme}://{host}:{_env_port('MEDIAGEN_HTTP_PORT', DEFAULT_HTTP_PORT)}"


Action = Callable[[MediagenClient, argparse.Namespace], Awaitable[int]]


def run_client(args: argparse.Namespace) -> int:
    target: str = args.target or default_target()
    tls = client_tls(args)
    http_url: str | None = args.http_url or default_http_url(target, tls=tls is not None)
    action: Action = args.action

    api_key = args.api_key or os.environ.get("MEDIAGEN_API_KEY", "").strip() or None

    async def run() -> int:
        async with MediagenClient(
            target,
            timeout_s=args.timeout,
            http_base_url=http_url,
            tls=tls is not None,
            ca=tls.ca if tls else None,
            cert=tls.cert if tls else None,
            key=tls.key if tls else None,
            api_key=api_key,
            metadata=[("x-request-id", args.x_request_id)] if args.x_request_id else (),
        ) as client:
            return await action(client, args)

    try:
        return asyncio.run(run())
    except StatusError as exc:
        print_error(_describe(exc, target, tls=tls is not None))
    except DownloadError as exc:
        print_error(f"download failed: {exc}")
    return EXIT_FAILED


def _describe(exc: StatusError, target: str, *, tls: bool = False) -> str:
    """One line for a refused call; field violations the message does not already name added."""
    message = " ".join(exc.message.split())
    # UNAVAILABLE without ErrorInfo comes from the transport (nothing listening, or a TLS
    # handshake that failed), not from this service reporting a sick dependency.
    if isinstance(exc, UnavailableError) and not exc.reason:
        # A refused handshake looks like a closed socket from here, so name both causes.
        tls_hint = (
            "; with TLS, check that --ca signed the server's certificate and, if the server "
            "requires one, that --cert/--key are a client certificate it accepts"
            if tls
            else "; if the server uses TLS, add --tls (and --ca)"
        )
        return (
            f"cannot reach the server at {target} ({message}); is the server running? "
            f"start it with `mediagen serve`{tls_hint}"
        )
    if isinstance(exc, DeadlineExceededError):
        return f"the server at {target} did not answer in time ({message}); try --timeout"
    text = f"{exc.code.name.lower().replace('_', ' ')}: {message}"
    unnamed = [
        f"{v.field}: {v.description}"
        for v in exc.field_violations
        if f"{v.field}: {v.description}" not in message
    ]
    return f"{text} ({'; '.join(unnamed)})" if unnamed else text


async def _watch_with_bar(client: MediagenClient, job: job_pb2.Job) -> job_pb2.Job:
    """Follow the job with a progress bar on stderr, state in its description; return it ended."""
    with tqdm(
        total=100,
        desc=state_name(job.status),
        bar_format="{desc:<9} {percentage:3.0f}%|{bar}| {elapsed}",
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        async for event in client.watch(job.id):
            job = event.job
            attempt = f" (attempt {job.attempt})" if job.attempt > 1 else ""
            bar.set_description_str(state_name(job.status) + attempt, refresh=False)
            bar.n = round(job.progress * 100, 1)
            bar.refresh()
    return job


async def generate_command(client: MediagenClient, args: argparse.Namespace) -> int:
    # In --json mode stdout carries one JSON document; everything for people goes to stderr.
    say: TextIO = sys.stderr if args.json else sys.stdout
    job = await client.generate(
        args.prompt,
        model=args.model,
        parameters=args.parameters,
        request_id=args.request_id,
        labels=args.labels,
    )
    print(f"Submitted job {job.id} ({state_name(job.status)})", file=say)
    print(f"Status: {absolute_url(client, job.status_url)}", file=say)
    try:
        if args.watch:
            job = await _watch_with_bar(client, job)
        elif args.out is not None:
            job = await client.wait(job.id)
    except asyncio.CancelledError:  # Ctrl-C: the job itself goes on, so say how to find it
        print(f"Stopped waiting; job {job.id} goes on (mediagen jobs watch {job.id})", file=say)
        raise
    if args.json:
        print(to_json(job))
    if job.status not in TERMINAL_STATES:
        return EXIT_OK
    if (status := exit_code_for(job)) != EXIT_OK:
        return status
    print(f"Job {job.id} {state_name(job.status)}", file=say)
    for media in job.media if args.out is not None else ():
        path = await client.download(media, args.out)
        print(f"Saved {path}", file=say)
    return EXIT_OK


async def jobs_list(client: MediagenClient, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    created_after = ages.resolve(args.newer_than, now)
    created_before = ages.resolve(args.older_than, now)
    page = await client.list(
        status=args.status,
        model=args.model,
        created_after=created_after,
        created_before=created_before,
        page_size=args.page_size,
        page_token=args.page_token,
    )
    if args.json:
        print(to_json(page))
        return EXIT_OK
    rows = [("ID", "STATUS", "PROGRESS", "MODEL", "CREATED")]
    rows.extend(
        (
            job.id,
            state_name(job.status),
            f"{job.progress:.0%}",
            job.model,
            format_time(job.create_time),
        )
        for job in page.jobs
    )
    if page.jobs:
        print(table(rows))
    print(f"{len(page.jobs)} of {page.total_size} jobs")
    if page.next_page_token:
        filters = ListFilters(args.status, args.model, created_after, created_before)
        print(f"more: {next_page_command(args, filters, page.next_page_token)}")
    return EXIT_OK


async def jobs_get(client: MediagenClient, args: argparse.Namespace) -> int:
    job = await client.get(args.id)
    print(to_json(job) if args.json else job_text(job, client))
    return EXIT_OK


async def jobs_cancel(client: MediagenClient, args: argparse.Namespace) -> int:
    job = await client.cancel(args.id)
    if args.json:
        print(to_json(job))
    elif job.status == job_pb2.JOB_STATE_CANCELED:
        print(f"Job {job.id} CANCELED")
    else:
        print(
            f"Job {job.id} {state_name(job.status)}, cancel requested; "
            f"it ends CANCELED once its worker stops (mediagen jobs watch {job.id})"
        )
    return EXIT_OK


async def jobs_watch(client: MediagenClient, args: argparse.Namespace) -> int:
    job: job_pb2.Job | None = None
    async for event in client.watch(args.id, after_sequence=args.after):
        job = event.job
        if args.json:
            print(to_json(event, indent=None), flush=True)
            continue
        kind = job_pb2.JobEventType.Name(event.type).removeprefix("JOB_EVENT_TYPE_")
        state = state_name(job.status)
        print(
            f"#{event.sequence:<4} {format_time(event.time)}  {kind:<16} {state:<9} "
            f"{job.progress:>4.0%}",
            flush=True,
        )
    # Nothing after --after on a finished job: the exit status still tells how it ended.
    return exit_code_for(job if job is not None else await client.get(args.id))


async def media_get(client: MediagenClient, args: argparse.Namespace) -> int:
    media = await client.get_media(args.id)
    say: TextIO = sys.stderr if args.json else sys.stdout
    if args.json:
        print(to_json(media))
    else:
        print(
            fields(
                [
                    ("id", media.id),
                    ("job", media.job_id),
                    ("kind", media_pb2.MediaKind.Name(media.kind).removeprefix("MEDIA_KIND_")),
                    ("mime type", media.mime_type),
                    ("size", f"{media.width}x{media.height}"),
                    ("bytes", str(media.size_bytes)),
                    ("sha256", media.sha256),
                    ("url", absolute_url(client, media.url)),
                    ("created", format_time(media.create_time)),
                ]
            )
        )
    if args.out is not None:
        print(f"Saved {await client.download(media, args.out)}", file=say)
    return EXIT_OK
