"""The local TCP ports a process holds open, read from ``/proc`` (Linux), so the run can tell
which database sessions belong to a worker it is about to freeze."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

_SOCKET_LINK = re.compile(r"socket:\[(\d+)\]")


def socket_inodes(links: Iterable[str]) -> set[int]:
    """The socket inodes among a process's ``/proc/<pid>/fd`` link targets. Pure."""
    return {int(m[1]) for link in links if (m := _SOCKET_LINK.fullmatch(link))}


def local_ports(tcp_table: str, inodes: set[int]) -> set[int]:
    """Local ports of the sockets ``inodes`` in a ``/proc/net/tcp``(6) table. Pure."""
    ports = set()
    for line in tcp_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        if int(fields[9]) in inodes:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def ports_of(pid: int) -> set[int]:
    """The local TCP ports process ``pid`` holds; empty where ``/proc`` cannot tell."""
    fd_dir = Path(f"/proc/{pid}/fd")
    links = []
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return set()
    for name in names:
        with contextlib.suppress(OSError):  # closed meanwhile
            links.append(os.readlink(fd_dir / name))
    inodes = socket_inodes(links)
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            ports |= local_ports(Path(f"/proc/{pid}/net/{table}").read_text(), inodes)
        except OSError:
            continue
    return ports
