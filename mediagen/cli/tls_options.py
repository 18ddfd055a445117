"""``--tls``, ``--ca``, ``--cert``, ``--key``: how the client commands, and ``mediagen gateway``'s
own calls to the API, reach a server that speaks TLS (mTLS with ``--cert``/``--key``).

Each flag has an environment variable for deployments (``MEDIAGEN_TARGET_TLS``, ``_CA``,
``_CERT``, ``_KEY``: about talking to ``MEDIAGEN_TARGET``); a flag wins over its variable.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Final

from mediagen.cli.base import UsageError
from mediagen.config import ConfigError
from mediagen.tls import ClientTLS

ENV_TLS: Final = "MEDIAGEN_TARGET_TLS"
ENV_CA: Final = "MEDIAGEN_TARGET_CA"
ENV_CERT: Final = "MEDIAGEN_TARGET_CERT"
ENV_KEY: Final = "MEDIAGEN_TARGET_KEY"

#: The variables this module reads (the README documents each).
ENVIRONMENT: Final = (ENV_TLS, ENV_CA, ENV_CERT, ENV_KEY)

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"", "0", "false", "no", "off"})


def add_tls_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Before the command (``top``), or after it, where they win over the ones before."""
    default: object = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--tls",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help=f"talk TLS to the server (env {ENV_TLS}; implied by --ca, --cert, --key); "
        "without --ca, the public roots gRPC ships are trusted",
    )
    parser.add_argument(
        "--ca",
        type=Path,
        metavar="FILE",
        default=default,
        help=f"PEM roots that signed the server's certificate (env {ENV_CA})",
    )
    parser.add_argument(
        "--cert",
        type=Path,
        metavar="FILE",
        default=default,
        help=f"PEM client certificate, for a server that requires one (env {ENV_CERT})",
    )
    parser.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        default=default,
        help=f"PEM key of --cert (env {ENV_KEY})",
    )


def _env_path(name: str) -> Path | None:
    raw = os.environ.get(name, "").strip()
    return Path(raw) if raw else None


def _env_flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise UsageError(f"{name} must be true or false, got {raw!r}")


def client_tls(args: argparse.Namespace) -> ClientTLS | None:
    """The TLS the command line and environment ask for; None for plaintext."""
    ca: Path | None = args.ca or _env_path(ENV_CA)
    cert: Path | None = args.cert or _env_path(ENV_CERT)
    key: Path | None = args.key or _env_path(ENV_KEY)
    if not (args.tls or _env_flag(ENV_TLS) or ca or cert or key):
        return None
    if (cert is None) != (key is None):
        raise UsageError("--cert and --key go together (a client certificate and its key)")
    try:
        tls = ClientTLS(ca=ca, cert=cert, key=key)
        tls.ssl_context()  # a missing or mismatched file is a usage error, before any call
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    return tls
