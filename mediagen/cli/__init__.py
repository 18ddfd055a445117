"""The ``mediagen`` command: run the service's processes, or talk to a running service.

Run the service::

    mediagen serve                        # everything in one process, on 127.0.0.1
    mediagen api | worker | gateway | scheduler | migrate | emulator

Use it (over gRPC, through :mod:`mediagen.client`)::

    mediagen generate "a red fox" --param width=512 --watch --out out/
    mediagen jobs list --status running
    mediagen jobs list --status failed --model acme/sdxl --newer-than 2h
    mediagen top --metrics http://api:9100/metrics --metrics http://worker:9100/metrics
    mediagen jobs watch JOB_ID --after 3

Exit status: 0 on success; 1 when the server refused a call, a download failed, or a watched
job ended FAILED or CANCELED; 2 for a usage error (bad flag, bad ``--param``). A caller's
mistake is one line on stderr, never a traceback.
"""

import os

# gRPC core logs every refused TLS handshake at INFO on stderr, in front of the one line the CLI
# prints about it. ERROR was gRPC's own default before it moved to absl logging; it is read
# once, when grpc is first imported, so it is set before anything below imports it.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from mediagen.cli.base import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from mediagen.cli.commands import default_http_url, default_target
from mediagen.cli.parser import build_parser, main

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "default_http_url",
    "default_target",
    "main",
]
