"""One frame of ``mediagen top``: a snapshot, and the lines (or JSON) it is shown as. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mediagen.cli.output import table
from mediagen.cli.top.figures import ACTIVE_STATES, FINISHED_STATES, Figures

#: Longest error text shown per failed job (the full one: `mediagen jobs get ID`).
ERROR_CHARS = 100


@dataclass(frozen=True)
class Failure:
    """A failed job, as the recent-failures list shows it."""

    job_id: str
    model: str
    failed_at: datetime | None
    error: str


@dataclass(frozen=True)
class Snapshot:
    """What one frame shows."""

    taken_at: datetime
    #: The time between the two rounds of scrapes the rates come from (seconds).
    window_s: float
    figures: Figures
    #: Jobs finished per second over the window, by final state.
    per_second: Mapping[str, float]
    failures: tuple[Failure, ...]
    #: Why the failures could not be listed (empty when they were).
    failures_error: str = ""


def _stamp(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= ERROR_CHARS else flat[: ERROR_CHARS - 1] + "…"


def _queue(figures: Figures) -> str:
    if figures.queue_depth is None:
        return "queue       - (no endpoint computes the database gauges: add an API's metrics)"
    return f"queue       {figures.queue_depth} waiting, oldest {figures.oldest_wait_s or 0:.1f}s"


def _workers(figures: Figures) -> list[str]:
    if not figures.workers:
        return ["workers     none found (add each worker's --metrics URL)"]
    rows = [("IN FLIGHT", "ROLE", "ENDPOINT")]
    rows.extend(
        (f"{w.in_flight}/{w.concurrency}", w.role, w.url)
        for w in sorted(figures.workers, key=lambda w: w.url)
    )
    return ["workers", *("  " + line for line in table(rows).splitlines())]


def _failures(snapshot: Snapshot) -> list[str]:
    if snapshot.failures_error:
        return [f"recent failures: not listed ({snapshot.failures_error})"]
    if not snapshot.failures:
        return ["recent failures: none"]
    rows = [("JOB", "MODEL", "FINISHED", "ERROR")]
    rows.extend(
        (f.job_id, f.model, _stamp(f.failed_at), _one_line(f.error) or "-")
        for f in snapshot.failures
    )
    return ["recent failures", *("  " + line for line in table(rows).splitlines())]


def render(snapshot: Snapshot) -> list[str]:
    """The frame's lines, top to bottom."""
    figures = snapshot.figures
    active = "  ".join(f"{s} {figures.active[s]}" for s in ACTIVE_STATES)
    finished = "  ".join(f"{s} {figures.finished[s]:g}" for s in FINISHED_STATES)
    total_rate = sum(snapshot.per_second.values())
    rates = ", ".join(f"{s} {snapshot.per_second[s]:.2f}/s" for s in FINISHED_STATES)
    lines = [
        f"mediagen top  {_stamp(snapshot.taken_at)}",
        _queue(figures),
        f"jobs        {active}",
        f"finished    {finished}  (since the scraped processes started)",
        f"throughput  {total_rate:.2f} jobs/s ({rates}) over {snapshot.window_s:.1f}s",
        *_workers(figures),
        *_failures(snapshot),
    ]
    lines.extend(f"unreachable {url}: {why}" for url, why in figures.unreachable)
    return lines


def as_json(snapshot: Snapshot) -> dict[str, Any]:
    """The frame as a JSON object (``--json``): the same figures, unrounded."""
    figures = snapshot.figures
    return {
        "time": _stamp(snapshot.taken_at),
        "windowSeconds": snapshot.window_s,
        "queueDepth": figures.queue_depth,
        "oldestWaitSeconds": figures.oldest_wait_s,
        "jobs": dict(figures.active),
        "finished": dict(figures.finished),
        "finishedPerSecond": dict(snapshot.per_second),
        "workers": [
            {"url": w.url, "role": w.role, "inFlight": w.in_flight, "concurrency": w.concurrency}
            for w in figures.workers
        ],
        "recentFailures": [
            {
                "id": f.job_id,
                "model": f.model,
                "finishTime": _stamp(f.failed_at),
                "error": f.error,
            }
            for f in snapshot.failures
        ],
        "failuresError": snapshot.failures_error,
        "unreachable": [{"url": url, "error": why} for url, why in figures.unreachable],
    }
