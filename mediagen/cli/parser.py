"""The argument parser and ``main``."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from mediagen.cli.ages import parse_age
from mediagen.cli.base import DEFAULT_TIMEOUT_S, EXIT_INTERRUPTED, EXIT_USAGE, UsageError
from mediagen.cli.bench import add_bench_command
from mediagen.cli.chaos import add_chaos_command
from mediagen.cli.commands import (
    Action,
    generate_command,
    jobs_cancel,
    jobs_get,
    jobs_list,
    jobs_watch,
    media_get,
    run_client,
)
from mediagen.cli.keys import add_keys_commands
from mediagen.cli.output import print_error
from mediagen.cli.service import ROLES, run_role
from mediagen.cli.tls_options import add_tls_options
from mediagen.cli.top import top_command
from mediagen.client import ParameterError, parse_params


def _key_values(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects KEY=VALUE, got {item!r}")
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


def _count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= count <= 100:
        raise argparse.ArgumentTypeError(f"must be between 0 and 100: {count}")
    return count


def _prepare_generate(args: argparse.Namespace) -> None:
    """Check --param and --label before anything goes over the wire."""
    try:
        args.parameters = parse_params(args.param or ()) if args.param else None
    except ParameterError as exc:
        raise UsageError(f"--param {exc}") from exc
    args.labels = _key_values(args.label, "--label")


def _client_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--target, --http-url, --api-key, --x-request-id and --timeout: before the command, or
    after it (then they win)."""
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
        "$MEDIAGEN_PUBLIC_URL, else http(s)://<target host>:$MEDIAGEN_HTTP_PORT or 8080)",
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        default=default,
        help="API key sent as 'authorization: Bearer KEY' (default: $MEDIAGEN_API_KEY; prefer "
        "the variable: a flag shows in the process list)",
    )
    parser.add_argument(
        "--x-request-id",
        metavar="ID",
        default=default,
        help="request id sent as x-request-id metadata: the service logs the calls (and the "
        "jobs they submit) under it (default: the service makes one per call)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        default=DEFAULT_TIMEOUT_S if top else argparse.SUPPRESS,
        help="deadline of each call (default 30; watching has none)",
    )
    add_tls_options(parser, top=top)


def _client_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    action: Action,
    summary: str,
    *,
    json_flag: bool = True,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=_sentence(summary))
    _client_options(parser, top=False)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print proto-JSON")
    parser.set_defaults(run=run_client, action=action)
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

    for name, role in ROLES.items():
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
            add_tls_options(sub, top=False)  # how the gateway reaches that API
        sub.set_defaults(run=run_role)

    generate = _client_command(commands, "generate", generate_command, "submit a generation job")
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
    listing = _client_command(job_commands, "list", jobs_list, "list jobs, newest first")
    listing.add_argument(
        "--status", metavar="S", help="only jobs in this state (pending, running, succeeded, ...)"
    )
    listing.add_argument(
        "--model", metavar="M", help="only jobs of this model (owner/name: every version)"
    )
    listing.add_argument(
        "--older-than",
        type=parse_age,
        metavar="AGE",
        help="only jobs created longer ago than AGE (30s, 10m, 2h, 3d) or before a UTC time "
        "(2026-12-01T10:00:00Z)",
    )
    listing.add_argument(
        "--newer-than",
        type=parse_age,
        metavar="AGE",
        help="only jobs created within AGE, or at or after a UTC time",
    )
    listing.add_argument("--page-size", type=int, default=0, metavar="N", help="default 50")
    listing.add_argument("--page-token", default="", metavar="TOKEN", help="from a previous page")
    _client_command(job_commands, "get", jobs_get, "show a job").add_argument("id", metavar="ID")
    _client_command(job_commands, "cancel", jobs_cancel, "cancel a job").add_argument(
        "id", metavar="ID"
    )
    watch = _client_command(
        job_commands, "watch", jobs_watch, "print a job's events until it finishes"
    )
    watch.add_argument("id", metavar="ID")
    watch.add_argument(
        "--after", type=int, default=0, metavar="N", help="only events after sequence N"
    )

    top = _client_command(
        commands,
        "top",
        top_command,
        "a live view of the queue, jobs per state, throughput, workers and recent failures",
    )
    top.add_argument(
        "--metrics",
        action="append",
        metavar="URL",
        help="a /metrics endpoint to read, repeatable: each API, worker and gateway process "
        "(default: the gateway's, --http-url/metrics, which `mediagen serve` fills alone)",
    )
    top.add_argument(
        "--interval", type=_seconds, default=2.0, metavar="SECONDS", help="refresh (default 2)"
    )
    top.add_argument(
        "--failures", type=_count, default=5, metavar="N", help="failed jobs listed (default 5)"
    )
    top.add_argument(
        "--once",
        action="store_true",
        help="print one frame, one interval after the start, and exit (1 if a source failed)",
    )

    media = commands.add_parser("media", help="show or download stored media")
    media_commands = media.add_subparsers(dest="media_command", metavar="COMMAND", required=True)
    show_media = _client_command(media_commands, "get", media_get, "show a media file")
    show_media.add_argument("id", metavar="ID")
    show_media.add_argument("--out", type=Path, metavar="DIR", help="also download it into DIR")

    add_keys_commands(commands)
    add_chaos_command(commands)
    add_bench_command(commands)
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
    except UsageError as exc:
        print_error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
