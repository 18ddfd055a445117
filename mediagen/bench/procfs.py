"""CPU seconds and memory of processes by PID, read from ``/proc`` (Linux).

Parsing is pure; :func:`read_usage` does the reading. A process that is gone reads as ``None``.
A server that works in child processes (PostgreSQL's backends) is measured as a tree: its CPU
is its own, its children's, and that of the children it has reaped (``cutime``), so a backend
that ends during the interval still counts; its RSS is the parent's alone, as the children
share most of their memory with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """One reading of a process."""

    cpu_s: float  # user + system since the process started
    rss_kib: int  # VmRSS
    hwm_kib: int  # VmHWM: the peak RSS (since start, or since the last reset)


def _stat_fields(stat: str) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    return stat.rsplit(")", 1)[1].split()


def cpu_seconds(stat: str, ticks_per_s: int = _TICKS_PER_S, *, reaped: bool = False) -> float:
    """User + system CPU seconds from the text of ``/proc/<pid>/stat``; with ``reaped``,
    plus those of the children it has waited for."""
    fields = _stat_fields(stat)
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)
    if reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / ticks_per_s


def parent_pid(stat: str) -> int:
    return int(_stat_fields(stat)[1])


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as file:
        return file.read()


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid``, its living children and those it reaped; raises OSError when
    ``pid`` is gone."""
    total = cpu_seconds(_read(f"/proc/{pid}/stat"), reaped=True)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = _read(f"/proc/{entry}/stat")
        except OSError:
            continue  # ended meanwhile: its parent has reaped it, or will
        if parent_pid(stat) == pid:
            total += cpu_seconds(stat, reaped=True)
    return total


def status_kib(status: str, name: str) -> int:
    """A ``kB`` field (``VmRSS``, ``VmHWM``) of ``/proc/<pid>/status``; 0 if absent."""
    for line in status.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def read_usage(pid: int, *, tree: bool = False) -> Usage | None:
    try:
        cpu = tree_cpu_seconds(pid) if tree else cpu_seconds(_read(f"/proc/{pid}/stat"))
        text = _read(f"/proc/{pid}/status")
    except OSError:
        return None
    return Usage(cpu, status_kib(text, "VmRSS"), status_kib(text, "VmHWM"))


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); False where that is not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class ProcessFigures:
    """What one process spent over a measured interval."""

    name: str
    pid: int
    cpu_s: float
    cores: float  # cpu_s / wall seconds of the interval
    rss_start_mib: float
    rss_end_mib: float
    rss_peak_mib: float  # the largest of VmHWM (when it was reset) and the samples

    @property
    def rss_growth_mib(self) -> float:
        return self.rss_peak_mib - self.rss_start_mib

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "pid": self.pid,
            "cpu_s": round(self.cpu_s, 3),
            "cores": round(self.cores, 4),
            "rss_start_mib": round(self.rss_start_mib, 1),
            "rss_end_mib": round(self.rss_end_mib, 1),
            "rss_peak_mib": round(self.rss_peak_mib, 1),
            "rss_growth_mib": round(self.rss_growth_mib, 1),
        }


class Meter:
    """Measures named processes over an interval: CPU by difference, RSS sampled every
    ``interval_s`` on the event loop, and VmHWM (reset at the start where allowed)."""

    def __init__(
        self, pids: Mapping[str, int], trees: Collection[str] = (), interval_s: float = 0.1
    ) -> None:
        self.pids = dict(pids)
        self.trees = frozenset(trees)  # names measured with their children
        self.interval_s = interval_s
        self._start: dict[str, Usage] = {}
        self._peak_kib: dict[str, int] = {}
        self._hwm_reset: dict[str, bool] = {}
        self._t0 = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, pid in self.pids.items():
            self._hwm_reset[name] = reset_peak(pid)
            usage = read_usage(pid, tree=name in self.trees)
            if usage is not None:
                self._start[name] = usage
                self._peak_kib[name] = usage.rss_kib
        self._t0 = loop.time()
        self._task = loop.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            for name, pid in self.pids.items():
                usage = read_usage(pid)
                if usage is not None:
                    self._peak_kib[name] = max(self._peak_kib.get(name, 0), usage.rss_kib)

    async def stop(self) -> list[ProcessFigures]:
        wall = asyncio.get_running_loop().time() - self._t0
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        figures = []
        for name, pid in self.pids.items():
            first, last = self._start.get(name), read_usage(pid, tree=name in self.trees)
            if first is None or last is None:
                continue
            peak = max(self._peak_kib.get(name, 0), last.rss_kib)
            if self._hwm_reset.get(name):
                peak = max(peak, last.hwm_kib)
            cpu = last.cpu_s - first.cpu_s
            figures.append(
                ProcessFigures(
                    name=name,
                    pid=pid,
                    cpu_s=cpu,
                    cores=cpu / wall if wall > 0 else 0.0,
                    rss_start_mib=first.rss_kib / 1024,
                    rss_end_mib=last.rss_kib / 1024,
                    rss_peak_mib=peak / 1024,
                )
            )
        return figures
