"""The ``mediagen`` command: run the service's processes, or talk to a running service.

Run the service::

    mediagen serve                        # everything in one process, on 127.0.0.1
    mediagen api | worker | gateway | scheduler | migrate | emulator

Use it (over gRPC, through :mod:`mediagen.client`)::

    mediagen generate "a red fox" --param width=512 --watch --out out/
    mediagen jobs list --status running
    mediagen jobs watch JOB_ID --after 3

Exit status: 0 on success; 1 when the server refused a call, a download failed, or a watched
job ended FAILED or CANCELED; 2 for a usage error (bad flag, bad ``--param``). A caller's
mistake is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from importlib import metadata
from pathlib import Path
from typing import Final, TextIO

import grpc
from google.protobuf import json_format
from google.protobuf import message as protobuf_message
from google.protobuf.timestamp_pb2 import Timestamp
from tqdm import tqdm

from mediagen.client import (
    TERMINAL_STATES,
    DeadlineExceededError,
    DownloadError,
    MediagenClient,
    ParameterError,
    StatusError,
    UnavailableError,
    parse_params,
)
from mediagen.config import ConfigError, Settings
from mediagen.v1 import job_pb2, media_pb2

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # the server said no, a download failed, or the job did not succeed
EXIT_USAGE: Final = 2  # as argparse's own
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report it

_DEFAULT_GRPC_PORT: Final = 50051
_DEFAULT_HTTP_PORT: Final = 8080


class _UsageError(Exception):
    """A mistake in the command line that argparse itself cannot see."""


# -- running the service --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flag:
    """A command-line flag that overrides one Settings field (and so its environment variable)."""

    option: str
    field: str
    type: Callable[[str], object]
    metavar: str
    help: str


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


_HOST = _Flag(
    "--host", "host", str, "HOST", "address to bind (env MEDIAGEN_HOST; default 127.0.0.1)"
)
_GRPC_PORT = _Flag(
    "--grpc-port", "grpc_port", _port, "PORT", "gRPC port (env MEDIAGEN_GRPC_PORT; default 50051)"
)
_HTTP_PORT = _Flag(
    "--http-port",
    "http_port",
    _port,
    "PORT",
    "HTTP gateway port (env MEDIAGEN_HTTP_PORT; default 8080)",
)
_DATA_DIR = _Flag(
    "--data-dir",
    "data_dir",
    Path,
    "DIR",
    "where the SQLite database and local media live (env MEDIAGEN_DATA_DIR; default .mediagen)",
)
_EMULATOR_PORT = _Flag(
    "--port",
    "emulator_port",
    _port,
    "PORT",
    "port (env MEDIAGEN_EMULATOR_PORT; default: any free port)",
)


@dataclass(frozen=True)
class _Role:
    summary: str
    flags: tuple[_Flag, ...]


_ROLES: Final[Mapping[str, _Role]] = {
    "serve": _Role(
        "run everything in one process: API, HTTP gateway, worker, and the Replicate emulator "
        "when REPLICATE_API_TOKEN is unset",
        (_HOST, _GRPC_PORT, _HTTP_PORT, _DATA_DIR),
    ),
    "api": _Role("run the gRPC API alone", (_HOST, _GRPC_PORT, _DATA_DIR)),
    "worker": _Role("run a worker (with its reconciler) alone", (_DATA_DIR,)),
    "gateway": _Role(
        "run the HTTP/JSON gateway in front of a gRPC API", (_HOST, _HTTP_PORT, _DATA_DIR)
    ),
    "scheduler": _Role(
        "run the reconciler alone (re-enqueues due and orphaned jobs)", (_DATA_DIR,)
    ),
    "migrate": _Role("apply the database migrations, then exit", (_DATA_DIR,)),
    "emulator": _Role("run the Replicate emulator alone", (_HOST, _EMULATOR_PORT)),
}


def _run_role(args: argparse.Namespace) -> int:
    role = _ROLES[args.command]
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise _UsageError(f"configuration: {exc}") from exc
    changes = {
        flag.field: getattr(args, flag.field)
        for flag in role.flags
        if getattr(args, flag.field) is not None
    }
    # Only the gateway dials gRPC; it follows --target when --grpc-target is not given.
    grpc_target = ""
    if args.command == "gateway":
        grpc_target = args.grpc_target or args.target or _default_target()
    try:
        asyncio.run(_role(args.command, settings.replace(**changes), grpc_target))
    except ConfigError as exc:  # raised by a role that cannot run with this configuration
        raise _UsageError(f"configuration: {exc}") from exc
    return EXIT_OK


async def _role(name: str, settings: Settings, grpc_target: str) -> None:
    # Imported here, not at the top: client commands need none of the server stack.
    from mediagen import roles

    roles.configure_logging(settings)
    if name == "gateway":
        await roles.gateway(settings, grpc_target)
        return
    alone: Mapping[str, Callable[[Settings], Awaitable[None]]] = {
        "serve": roles.serve,
        "api": roles.api,
        "worker": roles.worker,
        "scheduler": roles.scheduler,
        "migrate": roles.migrate,
        "emulator": roles.emulator,
    }
    await alone[name](settings)


# -- talking to the service ------------------------------------------------------------------------


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise _UsageError(f"{name} must be a port number, got {raw!r}") from None


def _default_target() -> str:
    """``$MEDIAGEN_TARGET``, else the local server ``mediagen serve`` starts by default."""
    target = os.environ.get("MEDIAGEN_TARGET", "").strip()
    return target or f"127.0.0.1:{_env_port('MEDIAGEN_GRPC_PORT', _DEFAULT_GRPC_PORT)}"


def _default_http_url(target: str) -> str | None:
    """``$MEDIAGEN_PUBLIC_URL``, else the gateway on the gRPC target's host (embedded layout)."""
    public = os.environ.get("MEDIAGEN_PUBLIC_URL", "").strip()
    if public:
        return public
    host, sep, _ = target.rpartition(":")
    if not sep or "/" in host:  # a resolver URI such as dns:///host:port: no guess
        return None
    return f"http://{host}:{_env_port('MEDIAGEN_HTTP_PORT', _DEFAULT_HTTP_PORT)}"


_Action = Callable[[MediagenClient, argparse.Namespace], Awaitable[int]]


def _run_client(args: argparse.Namespace) -> int:
    target: str = args.target or _default_target()
    http_url: str | None = args.http_url or _default_http_url(target)
    action: _Action = args.action

    async def run() -> int:
        async with MediagenClient(target, timeout_s=args.timeout, http_base_url=http_url) as client:
            return await action(client, args)

    try:
        return asyncio.run(run())
    except StatusError as exc:
        _error(_describe(exc, target))
    except DownloadError as exc:
        _error(f"download failed: {exc}")
    return EXIT_FAILED


def _describe(exc: StatusError, target: str) -> str:
    """One line for a refused call; field violations the message does not already name added."""
    message = " ".join(exc.message.split())
    # UNAVAILABLE without ErrorInfo comes from the transport (nothing listening), not from
    # this service reporting a sick dependency.
    if isinstance(exc, UnavailableError) and not exc.reason:
        return (
            f"cannot reach the server at {target} ({message}); is the server running? "
            "start it with `mediagen serve`"
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


def _error(text: str) -> None:
    print(f"mediagen: error: {text}", file=sys.stderr)


def _json(message: protobuf_message.Message, *, indent: int | None = 2) -> str:
    return json_format.MessageToJson(message, indent=indent)


def _state(status: job_pb2.JobState.ValueType) -> str:
    return job_pb2.JobState.Name(status).removeprefix("JOB_STATE_")


def _time(timestamp: Timestamp) -> str:
    if not timestamp.seconds and not timestamp.nanos:
        return "-"
    return timestamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _fields(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in pairs) + 1
    return "\n".join(f"{name + ':':<{width}} {value}" for name, value in pairs)


def _job_text(job: job_pb2.Job, client: MediagenClient) -> str:
    pairs = [
        ("id", job.id),
        ("status", _state(job.status) + (" (cancel requested)" if job.cancel_requested else "")),
        ("progress", f"{job.progress:.0%}"),
        ("model", job.model),
        ("prompt", job.prompt),
        ("attempt", str(job.attempt)),
        ("created", _time(job.create_time)),
        ("started", _time(job.start_time)),
        ("completed", _time(job.complete_time)),
        ("status url", _absolute(client, job.status_url)),
    ]
    if job.HasField("estimated_completion_time"):
        pairs.append(("estimated", _time(job.estimated_completion_time)))
    if job.labels:
        pairs.append(("labels", ", ".join(f"{k}={v}" for k, v in sorted(job.labels.items()))))
    if job.HasField("error"):
        pairs.append(("error", f"{_code_name(job.error.code)}: {job.error.message}"))
    lines = [_fields(pairs)]
    lines.extend(f"  media {_media_line(media, client)}" for media in job.media)
    return "\n".join(lines)


def _code_name(number: int) -> str:
    """``google.rpc.Code`` name of a status code number (the numbering gRPC's codes share)."""
    return next((code.name for code in grpc.StatusCode if code.value[0] == number), str(number))


def _media_line(media: media_pb2.Media, client: MediagenClient) -> str:
    size = f"{media.width}x{media.height}" if media.width and media.height else "-"
    url = _absolute(client, media.url)
    return f"{media.id}  {media.mime_type}  {size}  {media.size_bytes} bytes  {url}"


def _absolute(client: MediagenClient, url: str) -> str:
    try:
        return client.resolve_url(url) if url else "-"
    except DownloadError:
        return url


def _outcome(job: job_pb2.Job) -> int:
    """Exit status for a finished job; a line on stderr saying why it did not succeed."""
    if job.status == job_pb2.JOB_STATE_SUCCEEDED:
        return EXIT_OK
    reason = f": {job.error.message}" if job.error.message else ""
    _error(f"job {job.id} {_state(job.status)}{reason}")
    return EXIT_FAILED


async def _watch_with_bar(client: MediagenClient, job: job_pb2.Job) -> job_pb2.Job:
    """Follow the job with a progress bar on stderr, state in its description; return it ended."""
    with tqdm(
        total=100,
        desc=_state(job.status),
        bar_format="{desc:<9} {percentage:3.0f}%|{bar}| {elapsed}",
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        async for event in client.watch(job.id):
            job = event.job
            attempt = f" (attempt {job.attempt})" if job.attempt > 1 else ""
            bar.set_description_str(_state(job.status) + attempt, refresh=False)
            bar.n = round(job.progress * 100, 1)
            bar.refresh()
    return job


async def _generate(client: MediagenClient, args: argparse.Namespace) -> int:
    # In --json mode stdout carries one JSON document; everything for people goes to stderr.
    say: TextIO = sys.stderr if args.json else sys.stdout
    job = await client.generate(
        args.prompt,
        model=args.model,
        parameters=args.parameters,
        request_id=args.request_id,
        labels=args.labels,
    )
    print(f"Submitted job {job.id} ({_state(job.status)})", file=say)
    print(f"Status: {_absolute(client, job.status_url)}", file=say)
    try:
        if args.watch:
            job = await _watch_with_bar(client, job)
        elif args.out is not None:
            job = await client.wait(job.id)
    except asyncio.CancelledError:  # Ctrl-C: the job itself goes on, so say how to find it
        print(f"Stopped waiting; job {job.id} goes on (mediagen jobs watch {job.id})", file=say)
        raise
    if args.json:
        print(_json(job))
    if job.status not in TERMINAL_STATES:
        return EXIT_OK
    if (status := _outcome(job)) != EXIT_OK:
        return status
    print(f"Job {job.id} {_state(job.status)}", file=say)
    for media in job.media if args.out is not None else ():
        path = await client.download(media, args.out)
        print(f"Saved {path}", file=say)
    return EXIT_OK


async def _jobs_list(client: MediagenClient, args: argparse.Namespace) -> int:
    page = await client.list(
        status=args.status, page_size=args.page_size, page_token=args.page_token
    )
    if args.json:
        print(_json(page))
        return EXIT_OK
    rows = [("ID", "STATUS", "PROGRESS", "MODEL", "CREATED")]
    rows.extend(
        (job.id, _state(job.status), f"{job.progress:.0%}", job.model, _time(job.create_time))
        for job in page.jobs
    )
    if page.jobs:
        print(_table(rows))
    print(f"{len(page.jobs)} of {page.total_size} jobs")
    if page.next_page_token:
        print(f"more: mediagen jobs list --page-token {page.next_page_token}")
    return EXIT_OK


async def _jobs_get(client: MediagenClient, args: argparse.Namespace) -> int:
    job = await client.get(args.id)
    print(_json(job) if args.json else _job_text(job, client))
    return EXIT_OK


async def _jobs_cancel(client: MediagenClient, args: argparse.Namespace) -> int:
    job = await client.cancel(args.id)
    if args.json:
        print(_json(job))
    elif job.status == job_pb2.JOB_STATE_CANCELED:
        print(f"Job {job.id} CANCELED")
    else:
        print(
            f"Job {job.id} {_state(job.status)}, cancel requested; "
            f"it ends CANCELED once its worker stops (mediagen jobs watch {job.id})"
        )
    return EXIT_OK


async def _jobs_watch(client: MediagenClient, args: argparse.Namespace) -> int:
    job: job_pb2.Job | None = None
    async for event in client.watch(args.id, after_sequence=args.after):
        job = event.job
        if args.json:
            print(_json(event, indent=None), flush=True)
            continue
        kind = job_pb2.JobEventType.Name(event.type).removeprefix("JOB_EVENT_TYPE_")
        print(
            f"#{event.sequence:<4} {_time(event.time)}  {kind:<16} {_state(job.status):<9} "
            f"{job.progress:>4.0%}",
            flush=True,
        )
    # Nothing after --after on a finished job: the exit status still tells how it ended.
    return _outcome(job if job is not None else await client.get(args.id))


async def _media_get(client: MediagenClient, args: argparse.Namespace) -> int:
    media = await client.get_media(args.id)
    say: TextIO = sys.stderr if args.json else sys.stdout
    if args.json:
        print(_json(media))
    else:
        print(
            _fields(
                [
                    ("id", media.id),
                    ("job", media.job_id),
                    ("kind", media_pb2.MediaKind.Name(media.kind).removeprefix("MEDIA_KIND_")),
                    ("mime type", media.mime_type),
                    ("size", f"{media.width}x{media.height}"),
                    ("bytes", str(media.size_bytes)),
                    ("sha256", media.sha256),
                    ("url", _absolute(client, media.url)),
                    ("created", _time(media.create_time)),
                ]
            )
        )
    if args.out is not None:
        print(f"Saved {await client.download(media, args.out)}", file=say)
    return EXIT_OK


# -- the parser -----------------------------------------------------------------------------------


def _key_values(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _UsageError(f"{flag} expects KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value
    return pairs


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return seconds


def _prepare_generate(args: argparse.Namespace) -> None:
    """Check --param and --label before anything goes over the wire."""
    try:
        args.parameters = parse_params(args.param or ()) if args.param else None
    except ParameterError as exc:
        raise _UsageError(f"--param {exc}") from exc
    args.labels = _key_values(args.label, "--label")


def _client_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--target, --http-url and --timeout: before the command, or after it (then they win)."""
    default: object = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--target",
        metavar="HOST:PORT",
        default=default,
        help="gRPC server (default: $MEDIAGEN_TARGET, else 127.0.0.1:$MEDIAGEN_GRPC_PORT, "
        "else 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--http-url",
        metavar="URL",
        default=default,
        help="HTTP gateway base for relative media and status URLs (default: "
        "$MEDIAGEN_PUBLIC_URL, else http://<target host>:$MEDIAGEN_HTTP_PORT or 8080)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        default=30.0 if top else argparse.SUPPRESS,
        help="deadline of each call (default 30; watching has none)",
    )


def _client_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    action: _Action,
    summary: str,
    *,
    json_flag: bool = True,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=_sentence(summary))
    _client_options(parser, top=False)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print proto-JSON")
    parser.set_defaults(run=_run_client, action=action)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``mediagen`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="mediagen",
        description="Generate images (and other media) with AI models, asynchronously.",
        epilog='Start with `mediagen serve`, then `mediagen generate "a red fox" --watch '
        "--out out/` in another terminal.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _client_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for name, role in _ROLES.items():
        sub = commands.add_parser(name, help=role.summary, description=_sentence(role.summary))
        for flag in role.flags:
            sub.add_argument(
                flag.option, dest=flag.field, type=flag.type, metavar=flag.metavar, help=flag.help
            )
        if name == "gateway":
            sub.add_argument(
                "--grpc-target",
                metavar="HOST:PORT",
                help="the gRPC API to translate to (default: as --target)",
            )
        sub.set_defaults(run=_run_role)

    generate = _client_command(commands, "generate", _generate, "submit a generation job")
    generate.add_argument("prompt", metavar="PROMPT", help="what to generate (1 to 2,000 chars)")
    generate.add_argument("--model", help="owner/name[:version] (default: the server's)")
    generate.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="model input, repeatable: width, height, num_outputs, num_inference_steps, seed, "
        "guidance_scale, negative_prompt, output_format (png|jpeg|webp); other keys go to the "
        "model as is (numbers, true/false and JSON parsed, else text)",
    )
    generate.add_argument(
        "--request-id", metavar="ID", help="idempotency key, a UUID (default: a fresh one)"
    )
    generate.add_argument(
        "--label", action="append", metavar="KEY=VALUE", help="label kept on the job, repeatable"
    )
    generate.add_argument(
        "--watch", action="store_true", help="show a live progress bar until the job finishes"
    )
    generate.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="wait for the job and download its media into DIR",
    )
    generate.set_defaults(prepare=_prepare_generate)

    jobs = commands.add_parser("jobs", help="list, show, cancel or watch jobs")
    job_commands = jobs.add_subparsers(dest="jobs_command", metavar="COMMAND", required=True)
    listing = _client_command(job_commands, "list", _jobs_list, "list jobs, newest first")
    listing.add_argument(
        "--status", metavar="S", help="only jobs in this state (pending, running, succeeded, ...)"
    )
    listing.add_argument("--page-size", type=int, default=0, metavar="N", help="default 50")
    listing.add_argument("--page-token", default="", metavar="TOKEN", help="from a previous page")
    _client_command(job_commands, "get", _jobs_get, "show a job").add_argument("id", metavar="ID")
    _client_command(job_commands, "cancel", _jobs_cancel, "cancel a job").add_argument(
        "id", metavar="ID"
    )
    watch = _client_command(
        job_commands, "watch", _jobs_watch, "print a job's events until it finishes"
    )
    watch.add_argument("id", metavar="ID")
    watch.add_argument(
        "--after", type=int, default=0, metavar="N", help="only events after sequence N"
    )

    media = commands.add_parser("media", help="show or download stored media")
    media_commands = media.add_subparsers(dest="media_command", metavar="COMMAND", required=True)
    media_get = _client_command(media_commands, "get", _media_get, "show a media file")
    media_get.add_argument("id", metavar="ID")
    media_get.add_argument("--out", type=Path, metavar="DIR", help="also download it into DIR")
    return parser


def _sentence(summary: str) -> str:
    return summary[0].upper() + summary[1:] + "."


def _version() -> str:
    try:
        return metadata.version("mediagen")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mediagen`` command; return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        prepare: Callable[[argparse.Namespace], None] | None = getattr(args, "prepare", None)
        if prepare is not None:
            prepare(args)
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except _UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
