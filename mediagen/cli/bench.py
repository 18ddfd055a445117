"""``mediagen bench SCENARIO``: bounded load against a deployment on loopback, started here
(``--deploy embedded|distributed``) or already running (``--target``), printed as text or
``--json`` (:mod:`mediagen.bench`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from typing import TYPE_CHECKING

from mediagen.cli.base import EXIT_FAILED, EXIT_OK, UsageError
from mediagen.cli.output import print_error

if TYPE_CHECKING:
    from mediagen.bench.deploy import Deployment, DeployOptions

#: Each scenario's --jobs when none is given.
DEFAULT_JOBS = {"submit": 2000, "e2e": 1000, "inflight": 2000, "watch": 10, "copy": 1}


def add_bench_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from mediagen.bench.options import DEPLOY_KINDS, SCENARIO_NAMES

    bench = commands.add_parser(
        "bench",
        help="measure a deployment under bounded load (submit, e2e, inflight, watch, copy)",
        description="Start a private deployment on loopback (or use --target), run one "
        "bounded scenario, and print rates, latency percentiles, the CPU seconds and RSS of "
        "the processes it can see, and each target met or not.",
    )
    add = bench.add_argument
    add("scenario", choices=SCENARIO_NAMES, metavar="SCENARIO", help=", ".join(SCENARIO_NAMES))
    add(
        "--deploy",
        choices=DEPLOY_KINDS,
        default="embedded",
        help="the deployment to start (default embedded)",
    )
    add(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="distributed: worker processes (default 1)",
    )
    add(
        "--storage",
        choices=("local", "s3"),
        default=None,
        help="distributed: local files or S3 (moto); copy: s3",
    )
    add(
        "--webhooks",
        choices=("on", "off"),
        default="on",
        help="distributed: completion webhooks reach a gateway and polling is the fallback, "
        "as in production (default on); off: none come, workers poll",
    )
    add(
        "--metrics",
        choices=("on", "off"),
        default="on",
        help="MEDIAGEN_METRICS of the deployment started",
    )
    add(
        "--target",
        metavar="HOST:PORT",
        default=argparse.SUPPRESS,
        help="a running deployment's gRPC API instead of starting one",
    )
    add(
        "--pid",
        action="append",
        metavar="[NAME=]PID",
        help="with --target: a process to measure, repeatable",
    )
    add(
        "--emulator-url",
        metavar="URL",
        help="with --target: the emulator counting provider requests",
    )
    add(
        "--allow-remote",
        action="store_true",
        help="allow a --target or --emulator-url off loopback",
    )
    add(
        "--jobs",
        type=int,
        metavar="N",
        help="jobs at most (default: "
        + ", ".join(f"{name} {jobs}" for name, jobs in DEFAULT_JOBS.items())
        + ")",
    )
    add(
        "--seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="the longest a phase may take (default 60)",
    )
    add("--concurrency", type=int, default=32, metavar="C", help="closed-loop callers (default 32)")
    add("--rate", type=float, metavar="R", help="submit: offer R calls/s (an open loop) instead")
    add(
        "--job-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="each prediction's run time (submit: 60, inflight: 30)",
    )
    add(
        "--streams",
        type=int,
        default=100,
        metavar="N",
        help="watch: WatchJob streams (default 100)",
    )
    add(
        "--idle-s",
        type=float,
        default=5.0,
        metavar="S",
        help="watch: seconds measured idle (default 5)",
    )
    add(
        "--size-mib",
        type=int,
        default=1024,
        metavar="N",
        help="copy: the output's size (default 1024)",
    )
    add(
        "--part-size-mib", type=int, metavar="N", help="copy: S3 part size (default: the service's)"
    )
    add("--json", action="store_true", help="print the report as JSON")
    add("--strict", action="store_true", help="exit 1 when a target is missed")
    bench.set_defaults(run=run_bench_command)


def _pids(items: list[str] | None) -> dict[str, int]:
    pids = {}
    for item in items or ():
        name, sep, number = item.rpartition("=")
        if not number.isdigit():
            raise UsageError(f"--pid expects [NAME=]PID, got {item!r}")
        pids[name if sep else f"pid{number}"] = int(number)
    return pids


def _where(args: argparse.Namespace) -> DeployOptions | Deployment:
    from mediagen.bench.deploy import DeployOptions, attached
    from mediagen.chaos.targets import is_loopback_host, require_loopback_url

    target: str | None = getattr(args, "target", None)
    if target is None:
        if args.pid or args.emulator_url:
            raise UsageError("--pid and --emulator-url go with --target")
        storage = args.storage or (
            "s3" if args.scenario == "copy" and args.deploy == "distributed" else "local"
        )
        return DeployOptions(
            kind=args.deploy,
            workers=args.workers,
            storage=storage,
            webhooks=args.webhooks == "on",
        )
    host = target.rsplit(":", 1)[0]
    if not args.allow_remote:
        if not is_loopback_host(host):
            raise UsageError(f"--target {target} is not on loopback (use --allow-remote)")
        if args.emulator_url:
            require_loopback_url(args.emulator_url, "--emulator-url")
    api_key = args.api_key or os.environ.get("MEDIAGEN_API_KEY", "").strip() or None
    return attached(target, _pids(args.pid), args.emulator_url, api_key)


def run_bench_command(args: argparse.Namespace) -> int:
    from mediagen.bench.options import BenchOptions
    from mediagen.bench.report import format_text
    from mediagen.bench.runner import run_bench
    from mediagen.chaos.processes import StartupError

    try:
        options = BenchOptions(
            jobs=DEFAULT_JOBS[args.scenario] if args.jobs is None else args.jobs,
            seconds=args.seconds,
            concurrency=args.concurrency,
            rate=args.rate,
            job_seconds=args.job_seconds,
            streams=args.streams,
            idle_s=args.idle_s,
            size_mib=args.size_mib,
            part_size_mib=args.part_size_mib,
            metrics=args.metrics == "on",
        )
        where = _where(args)
    except ValueError as exc:  # NonLoopbackTarget among them
        raise UsageError(str(exc)) from exc

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # as Ctrl-C: every process started is stopped

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        report = asyncio.run(run_bench(args.scenario, options, where))
    except (StartupError, ValueError, TimeoutError) as exc:
        print_error(f"bench {args.scenario}: {exc or type(exc).__name__}")
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps(report.to_json(), indent=2) if args.json else format_text(report))
    return EXIT_FAILED if args.strict and not report.met_targets else EXIT_OK
