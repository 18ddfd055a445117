"""Running the service: ``mediagen serve | api | worker | gateway | scheduler | migrate |
emulator``, with flags that override settings."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mediagen.cli.base import EXIT_FAILED, EXIT_OK, UsageError
from mediagen.cli.commands import default_target
from mediagen.cli.output import print_error
from mediagen.cli.tls_options import client_tls
from mediagen.config import ConfigError, Settings
from mediagen.net import CannotListen
from mediagen.tls import ClientTLS


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


ROLES: Final[Mapping[str, _Role]] = {
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


def run_role(args: argparse.Namespace) -> int:
    role = ROLES[args.command]
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise UsageError(f"configuration: {exc}") from exc
    changes = {
        flag.field: getattr(args, flag.field)
        for flag in role.flags
        if getattr(args, flag.field) is not None
    }
    # Only the gateway dials gRPC; it follows --target when --grpc-target is not given.
    grpc_target = ""
    upstream_tls = None
    if args.command == "gateway":
        grpc_target = args.grpc_target or args.target or default_target()
        upstream_tls = client_tls(args)
    try:
        asyncio.run(_role(args.command, settings.replace(**changes), grpc_target, upstream_tls))
    except ConfigError as exc:  # raised by a role that cannot run with this configuration
        raise UsageError(f"configuration: {exc}") from exc
    except CannotListen as exc:  # a port taken (by another mediagen, say): say which, once
        print_error(exc.strerror or str(exc))
        return EXIT_FAILED
    return EXIT_OK


async def _role(
    name: str, settings: Settings, grpc_target: str, upstream_tls: ClientTLS | None
) -> None:
    # Imported here, not at the top: client commands need none of the server stack.
    from mediagen import roles

    roles.configure_logging(settings)
    if name == "gateway":
        await roles.gateway(settings, grpc_target, upstream_tls)
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
