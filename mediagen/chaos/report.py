"""What a chaos scenario observed, the counts in its report row, and the verdict. Pure: no I/O.

The run collects one :class:`JobObservation` per submitted job (from the APIs, the database, the
emulator's prediction list and the storage) and :func:`summarize` turns them into a
:class:`ScenarioRow`; :func:`violations` names every invariant the row breaks:

- no job lost (every accepted job final before the deadline);
- at most one prediction per job, and no prediction held by a job its marker does not name;
- no media beyond one per output, every stored media object present;
- every WatchJob stream got every stored event of its job exactly once;
- every failed job explained: only the failures injected on purpose, with their reason;
- the scenario settled within its bound (lease + reconcile interval + 30 s).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

#: States a job never leaves (the names of ``mediagen.v1.JobState`` without their prefix).
FINAL_STATES: Final = frozenset({"SUCCEEDED", "FAILED", "CANCELED"})

#: The per-job tokens put in prompts (``<k0007>``, ``<p03>``), removed from reasons so that
#: the same failure in many jobs counts as one reason.
_TOKEN = re.compile(r"<[a-z]\d+>")
_REASON_CHARS: Final = 100


@dataclass(frozen=True)
class WatchRecord:
    """One WatchJob watcher: the sequences it received, in order, across its reconnects."""

    sequences: tuple[int, ...]
    reconnects: int = 0
    finished: bool = False  # it received the job's terminal event


@dataclass(frozen=True)
class JobObservation:
    """Everything the run saw of one job once the scenario was over."""

    job_id: str
    status: str  # a FINAL_STATES name, PENDING, RUNNING, or "" when never read back
    error: str = ""  # the job's error message
    expected_error: str | None = None  # text injected on purpose that its error must contain
    outputs: int = 1  # media the job should end with when it succeeds
    media_keys: tuple[str, ...] = ()  # storage key of each media row
    media_present: int = 0  # of those, how many objects the storage holds
    stored_sequences: tuple[int, ...] = ()  # its events in the database
    watches: tuple[WatchRecord, ...] = ()
    predictions: tuple[str, ...] = ()  # at the emulator, carrying this job's marker
    held_prediction: str | None = None  # the prediction id the job stores
    held_marker_job: str | None = None  # the job named by that prediction's marker
    complete_time_s: float | None = None  # epoch seconds it became final


@dataclass(frozen=True)
class ScenarioRow:
    """One line of the report."""

    scenario: str
    jobs: int
    succeeded: int
    failed: int
    expected_failures: int
    failure_reasons: tuple[tuple[str, int], ...]
    lost: int
    unsubmitted: int
    predictions: int
    duplicate_predictions: int
    shared_predictions: int
    duplicate_media: int
    missing_media: int
    streams: int
    missed_events: int
    repeated_events: int
    unfinished_streams: int
    settle_s: float | None
    settle_limit_s: float
    client_errors: tuple[tuple[str, int], ...] = ()
    notes: tuple[str, ...] = ()
    violations: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.violations


def reason_of(error: str) -> str:
    """A failure's reason, the same for every job it hit."""
    text = " ".join(_TOKEN.sub("", error).split())
    return (text[:_REASON_CHARS] + "…") if len(text) > _REASON_CHARS else (text or "(no error)")


def missed_events(watch: WatchRecord, stored: Sequence[int]) -> int:
    """Stored events the watcher never received (it watched from the start)."""
    return len(set(stored) - set(watch.sequences))


def repeated_events(watch: WatchRecord) -> int:
    """Events the watcher received more than once, or out of order."""
    repeats = len(watch.sequences) - len(set(watch.sequences))
    backwards = sum(1 for a, b in zip(watch.sequences, watch.sequences[1:], strict=False) if b < a)
    return repeats + backwards


def stored_gaps(stored: Sequence[int]) -> int:
    """Sequence numbers missing from a job's stored events (they must be 1..N)."""
    return (max(stored) - len(set(stored))) if stored else 0


def settle_time(complete_times: Iterable[float | None], faults_over_at: float) -> float | None:
    """Seconds from the end of the faults to the last job becoming final (0 if all were done
    before); None when some job never became final."""
    times = list(complete_times)
    if not times or any(t is None for t in times):
        return None
    return max(0.0, max(t for t in times if t is not None) - faults_over_at)


def _shared(jobs: Sequence[JobObservation]) -> int:
    holders = Counter(job.held_prediction for job in jobs if job.held_prediction)
    shared = sum(n - 1 for n in holders.values())
    foreign = sum(
        1 for job in jobs if job.held_prediction and job.held_marker_job not in (None, job.job_id)
    )
    return shared + foreign


def _duplicate_media(jobs: Sequence[JobObservation]) -> int:
    keys = Counter(key for job in jobs for key in job.media_keys)
    shared_keys = sum(n - 1 for n in keys.values())
    extra = sum(max(0, len(job.media_keys) - job.outputs) for job in jobs)
    return shared_keys + extra


def _missing_media(job: JobObservation) -> int:
    if job.status != "SUCCEEDED":
        return 0
    return max(0, job.outputs - len(job.media_keys)) + (len(job.media_keys) - job.media_present)


def _explained(job: JobObservation) -> bool:
    return (
        job.status == "FAILED"
        and job.expected_error is not None
        and job.expected_error in job.error
    )


def summarize(
    scenario: str,
    jobs: Sequence[JobObservation],
    *,
    settle_s: float | None,
    settle_limit_s: float,
    unsubmitted: int = 0,
    client_errors: Mapping[str, int] | None = None,
    notes: Sequence[str] = (),
    broken: Sequence[str] = (),
) -> ScenarioRow:
    """The report row of one scenario, with its violations (``broken``: ones seen outside the
    jobs, such as a process that exited by itself)."""
    failed = [job for job in jobs if job.status in ("FAILED", "CANCELED")]
    reasons = Counter(f"{job.status.lower()}: {reason_of(job.error)}" for job in failed)
    streams = [(job, watch) for job in jobs for watch in job.watches]
    extra_notes = [
        f"{job.job_id}: a failure was injected but it ended {job.status}"
        for job in jobs
        if job.expected_error is not None and job.status == "SUCCEEDED"
    ]
    row = ScenarioRow(
        scenario=scenario,
        jobs=len(jobs),
        succeeded=sum(1 for job in jobs if job.status == "SUCCEEDED"),
        failed=len(failed),
        expected_failures=sum(1 for job in failed if _explained(job)),
        failure_reasons=tuple(sorted(reasons.items(), key=lambda item: (-item[1], item[0]))),
        lost=sum(1 for job in jobs if job.status not in FINAL_STATES),
        unsubmitted=unsubmitted,
        predictions=sum(len(job.predictions) for job in jobs),
        duplicate_predictions=sum(max(0, len(job.predictions) - 1) for job in jobs),
        shared_predictions=_shared(jobs),
        duplicate_media=_duplicate_media(jobs),
        missing_media=sum(_missing_media(job) for job in jobs),
        streams=len(streams),
        missed_events=sum(missed_events(w, job.stored_sequences) for job, w in streams)
        + sum(stored_gaps(job.stored_sequences) for job in jobs),
        repeated_events=sum(repeated_events(w) for _, w in streams),
        unfinished_streams=sum(1 for _, w in streams if not w.finished),
        settle_s=settle_s,
        settle_limit_s=settle_limit_s,
        client_errors=tuple(sorted((client_errors or {}).items())),
        notes=(*notes, *extra_notes),
    )
    return dataclasses.replace(row, violations=(*violations(row), *broken))


def violations(row: ScenarioRow) -> list[str]:
    """Every invariant ``row`` breaks, in words."""
    found: list[str] = []

    def check(count: int, what: str) -> None:
        if count:
            found.append(f"{count} {what}")

    check(row.lost, "lost (not final before the deadline)")
    check(row.unsubmitted, "submissions never accepted")
    check(row.duplicate_predictions, "duplicate predictions (a job paid twice)")
    check(row.shared_predictions, "predictions shared with, or taken from, another job")
    check(row.duplicate_media, "duplicate media")
    check(row.missing_media, "media missing from storage")
    check(row.missed_events, "missed WatchJob events")
    check(row.repeated_events, "repeated WatchJob events")
    check(row.unfinished_streams, "WatchJob streams that never saw the end")
    check(row.failed - row.expected_failures, "failed jobs not explained by an injected failure")
    if row.settle_s is not None and row.settle_s > row.settle_limit_s:
        found.append(f"settled in {row.settle_s:.1f}s, over the {row.settle_limit_s:.0f}s bound")
    return found


# --- the whole report ------------------------------------------------------------------------


@dataclass(frozen=True)
class ChaosReport:
    rows: tuple[ScenarioRow, ...]
    machine: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def row(self, scenario: str) -> ScenarioRow:
        for row in self.rows:
            if row.scenario == scenario:
                return row
        raise KeyError(scenario)

    def to_json(self) -> dict[str, Any]:
        rows = []
        for row in self.rows:
            data = dataclasses.asdict(row)
            data["failure_reasons"] = dict(row.failure_reasons)
            data["client_errors"] = dict(row.client_errors)
            data["passed"] = row.passed
            rows.append(data)
        return {
            "passed": self.passed,
            "machine": self.machine,
            "settings": dict(self.settings),
            "scenarios": rows,
        }


_COLUMNS: Final = (
    ("scenario", 16),
    ("jobs", 5),
    ("ok", 5),
    ("failed", 8),
    ("lost", 5),
    ("preds", 6),
    ("dup", 4),
    ("shared", 6),
    ("dupmedia", 8),
    ("streams", 7),
    ("missed", 6),
    ("repeat", 6),
    ("settle", 9),
    ("verdict", 7),
)


def _cells(row: ScenarioRow) -> list[str]:
    settle = "never" if row.settle_s is None else f"{row.settle_s:.1f}s"
    return [
        row.scenario,
        str(row.jobs),
        str(row.succeeded),
        f"{row.failed}({row.expected_failures})",
        str(row.lost),
        str(row.predictions),
        str(row.duplicate_predictions),
        str(row.shared_predictions),
        str(row.duplicate_media + row.missing_media),
        str(row.streams),
        str(row.missed_events),
        str(row.repeated_events),
        f"{settle}/{row.settle_limit_s:.0f}",
        "ok" if row.passed else "BROKEN",
    ]


def format_table(report: ChaosReport) -> str:
    """The report as text: a table, then each scenario's failure reasons, notes and
    violations. ``failed`` reads ``n(e)``: n failed jobs, e of them failed on purpose."""
    lines = ["  ".join(name.ljust(width) for name, width in _COLUMNS).rstrip()]
    for row in report.rows:
        lines.append(
            "  ".join(
                cell.ljust(width) for cell, (_, width) in zip(_cells(row), _COLUMNS, strict=True)
            ).rstrip()
        )
    for row in report.rows:
        details = [f"failed — {reason}: {n}" for reason, n in row.failure_reasons]
        details += [f"client saw {code}: {n}" for code, n in row.client_errors]
        details += [f"note: {note}" for note in row.notes]
        details += [f"VIOLATION: {v}" for v in row.violations]
        if details:
            lines.append(f"{row.scenario}:")
            lines += [f"  {line}" for line in details]
    total = sum(row.jobs for row in report.rows)
    verdict = "all invariants held" if report.passed else "INVARIANTS BROKEN"
    lines.append(f"{len(report.rows)} scenarios, {total} jobs: {verdict}")
    if report.machine:
        lines.append(f"machine: {report.machine}")
    return "\n".join(lines)
