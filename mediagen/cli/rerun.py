"""The command ``mediagen jobs list`` prints for its next page ("more: ..."). Pure: no I/O.

A page token is only good with the exact filter it was issued for, so the command repeats every
filter (ages as the times they stood for when the first page was asked for) and the options
that say which server to ask. The API key is left out on purpose: it would land in terminal
scrollback and shell history; set ``MEDIAGEN_API_KEY`` instead of passing ``--api-key``.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from datetime import datetime

from mediagen.cli.ages import format_time
from mediagen.cli.base import DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class ListFilters:
    """The filters one listing ran with, resolved."""

    status: str | None
    model: str | None
    created_after: datetime | None
    created_before: datetime | None


def _connection(args: argparse.Namespace) -> list[str]:
    words: list[str] = []
    for flag, value in (
        ("--target", args.target),
        ("--http-url", args.http_url),
        ("--ca", args.ca),
        ("--cert", args.cert),
        ("--key", args.key),
    ):
        if value is not None:
            words += [flag, str(value)]
    if args.tls:
        words.append("--tls")
    if args.timeout != DEFAULT_TIMEOUT_S:
        words += ["--timeout", f"{args.timeout:g}"]
    return words


def next_page_command(args: argparse.Namespace, filters: ListFilters, page_token: str) -> str:
    """A shell command line that lists the page after this one."""
    words = ["mediagen", "jobs", "list"]
    if filters.status:
        words += ["--status", filters.status]
    if filters.model:
        words += ["--model", filters.model]
    if filters.created_before is not None:
        words += ["--older-than", format_time(filters.created_before)]
    if filters.created_after is not None:
        words += ["--newer-than", format_time(filters.created_after)]
    if args.page_size:
        words += ["--page-size", str(args.page_size)]
    words += _connection(args)
    words += ["--page-token", page_token]
    return shlex.join(words)
