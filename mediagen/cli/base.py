"""Exit codes and the usage error every command shares."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # the server said no, a download failed, or the job did not succeed
EXIT_USAGE: Final = 2  # as argparse's own
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report it

DEFAULT_GRPC_PORT: Final = 50051
DEFAULT_HTTP_PORT: Final = 8080
#: Deadline of each client call unless --timeout says otherwise.
DEFAULT_TIMEOUT_S: Final = 30.0


class UsageError(Exception):
    """A mistake in the command line that argparse itself cannot see."""
