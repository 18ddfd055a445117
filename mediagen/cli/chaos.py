"""``mediagen chaos``: stand up a private distributed deployment on loopback, break it on
purpose, and report whether any job was lost or paid twice (:mod:`mediagen.chaos`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from mediagen.cli.base import EXIT_FAILED, EXIT_OK, UsageError
from mediagen.cli.output import print_error


def add_chaos_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from mediagen.chaos.plan import SCENARIO_NAMES

    chaos = commands.add_parser(
        "chaos",
        help="run the chaos suite against a private deployment on loopback",
        description="Start PostgreSQL, Redis, the emulator, two APIs and N workers on loopback, "
        "run each scenario (faults, kills, outages) on a bounded batch of jobs, and print one "
        "row per scenario. Exit status 1 if any invariant broke.",
    )
    add = chaos.add_argument
    add("--jobs", type=int, default=12, metavar="N", help="jobs per scenario (default 12)")
    add(
        "--scenario",
        action="append",
        choices=SCENARIO_NAMES,
        metavar="NAME",
        help=f"run only this scenario, repeatable: {', '.join(SCENARIO_NAMES)}",
    )
    add("--workers", type=int, default=2, metavar="N", help="worker processes (default 2)")
    add("--storage", choices=("local", "s3"), default="local", help="local files or S3 (moto)")
    add("--seed", type=int, default=0, help="random seed (default: a new one, printed)")
    add("--lease-s", type=float, default=6.0, metavar="S", help="workers' lease (default 6)")
    add(
        "--postgres-down-s",
        type=float,
        default=20.0,
        metavar="S",
        help="postgres-stop: seconds PostgreSQL stays down (default 20)",
    )
    add("--json", action="store_true", help="print the report as JSON")
    add(
        "--database-url",
        metavar="URL",
        help="use this (loopback) PostgreSQL instead of a private one; restarted only with "
        "--postgres-stop-cmd and --postgres-start-cmd",
    )
    add("--redis-url", metavar="URL", help="use this (loopback) Redis instead of a private one")
    add("--postgres-stop-cmd", metavar="CMD", help="shell command that stops --database-url's")
    add("--postgres-start-cmd", metavar="CMD", help="shell command that starts it again")
    add("--redis-stop-cmd", metavar="CMD", help="shell command that stops --redis-url's server")
    add("--redis-start-cmd", metavar="CMD", help="shell command that starts it again, empty")
    add("--workdir", type=Path, metavar="DIR", help="logs and data here (kept); default: temp")
    add("--keep", action="store_true", help="keep the temporary directory (logs) at the end")
    chaos.set_defaults(run=run_chaos_command)


def run_chaos_command(args: argparse.Namespace) -> int:
    from mediagen.chaos.cluster import ClusterOptions
    from mediagen.chaos.processes import StartupError
    from mediagen.chaos.report import format_table
    from mediagen.chaos.runner import ChaosOptions, run_chaos

    try:
        options = ChaosOptions(
            jobs_per_scenario=args.jobs,
            scenarios=tuple(args.scenario) if args.scenario else ChaosOptions().scenarios,
            seed=args.seed,
            postgres_down_s=args.postgres_down_s,
            cluster=ClusterOptions(
                workers=args.workers,
                storage=args.storage,
                lease_s=args.lease_s,
                ambiguous_settle_s=min(4.0, args.lease_s),
                database_url=args.database_url,
                redis_url=args.redis_url,
                postgres_stop_cmd=args.postgres_stop_cmd,
                postgres_start_cmd=args.postgres_start_cmd,
                redis_stop_cmd=args.redis_stop_cmd,
                redis_start_cmd=args.redis_start_cmd,
                workdir=args.workdir,
                keep_workdir=args.keep,
            ),
        )
    except ValueError as exc:  # NonLoopbackTarget among them
        raise UsageError(str(exc)) from exc

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # as Ctrl-C: the run stops every process it started

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        report = asyncio.run(run_chaos(options, progress))
    except StartupError as exc:
        print_error(f"chaos: could not start the deployment: {exc}")
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps(report.to_json(), indent=2) if args.json else format_table(report))
    return EXIT_OK if report.passed else EXIT_FAILED
