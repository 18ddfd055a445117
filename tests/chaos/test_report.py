"""The chaos report's counts and verdicts, one invariant at a time."""

from __future__ import annotations

import dataclasses
import json

from mediagen.chaos.plan import INJECTED_FAILURE
from mediagen.chaos.report import (
    ChaosReport,
    JobObservation,
    WatchRecord,
    format_table,
    reason_of,
    settle_time,
    summarize,
)


def good(job_id: str, prediction: str) -> JobObservation:
    """A job that did everything right: one prediction, one media, every event watched."""
    return JobObservation(
        job_id=job_id,
        status="SUCCEEDED",
        media_keys=(f"{job_id}/0.png",),
        media_present=1,
        stored_sequences=(1, 2, 3, 4),
        watches=(WatchRecord((1, 2, 3, 4), finished=True),),
        predictions=(prediction,),
        held_prediction=prediction,
        held_marker_job=job_id,
        complete_time_s=110.0,
    )


def row_of(*jobs: JobObservation, settle_s: float | None = 5.0) -> object:
    return summarize("s", list(jobs), settle_s=settle_s, settle_limit_s=37.0)


def test_a_clean_batch_breaks_nothing() -> None:
    row = summarize("s", [good("a", "p1"), good("b", "p2")], settle_s=5.0, settle_limit_s=37)
    assert row.passed and row.violations == ()
    assert (row.jobs, row.succeeded, row.failed, row.lost) == (2, 2, 0, 0)
    assert (row.predictions, row.duplicate_predictions, row.shared_predictions) == (2, 0, 0)
    assert (row.streams, row.missed_events, row.repeated_events) == (2, 0, 0)


def test_a_job_with_two_predictions_paid_twice() -> None:
    row = summarize(
        "s",
        [dataclasses.replace(good("a", "p1"), predictions=("p1", "p9"))],
        settle_s=1,
        settle_limit_s=37,
    )
    assert row.duplicate_predictions == 1 and row.predictions == 2
    assert row.violations == ("1 duplicate predictions (a job paid twice)",)


def test_holding_another_jobs_prediction_is_sharing() -> None:
    thief = dataclasses.replace(good("b", "p2"), held_prediction="p1", held_marker_job="a")
    row = summarize("s", [good("a", "p1"), thief], settle_s=1, settle_limit_s=37)
    # Held by two jobs, and held by one its marker does not name.
    assert row.shared_predictions == 2
    assert not row.passed


def test_extra_and_missing_media() -> None:
    extra = dataclasses.replace(good("a", "p1"), media_keys=("a/0.png", "a/1.png"), media_present=2)
    missing = dataclasses.replace(good("b", "p2"), media_present=0)
    row = summarize("s", [extra, missing], settle_s=1, settle_limit_s=37)
    assert (row.duplicate_media, row.missing_media) == (1, 1)
    assert len(row.violations) == 2


def test_missed_repeated_and_unfinished_streams() -> None:
    job = dataclasses.replace(
        good("a", "p1"),
        watches=(
            WatchRecord((1, 2, 4), finished=True),  # missed 3
            WatchRecord((1, 2, 3, 3, 4), reconnects=1, finished=True),  # repeated 3
            WatchRecord((1, 3, 2, 4), finished=True),  # out of order
            WatchRecord((1, 2), finished=False),  # never saw the end
        ),
    )
    row = summarize("s", [job], settle_s=1, settle_limit_s=37)
    assert row.missed_events == 1 + 2
    assert row.repeated_events == 2
    assert row.unfinished_streams == 1


def test_a_gap_in_the_stored_events_is_a_missed_event() -> None:
    job = dataclasses.replace(
        good("a", "p1"),
        stored_sequences=(1, 2, 4),
        watches=(WatchRecord((1, 2, 4), finished=True),),
    )
    assert summarize("s", [job], settle_s=1, settle_limit_s=37).missed_events == 1


def test_failures_are_explained_only_by_the_injected_failure() -> None:
    expected = JobObservation(
        "a",
        "FAILED",
        error=f"the model failed: {INJECTED_FAILURE} <k0101>",
        expected_error=INJECTED_FAILURE,
    )
    other_reason = JobObservation(
        "b", "FAILED", error="gave up after 10 attempts", expected_error=INJECTED_FAILURE
    )
    untagged = JobObservation("c", "FAILED", error="provider: 503")
    row = summarize("s", [expected], settle_s=1, settle_limit_s=37)
    assert (row.failed, row.expected_failures, row.passed) == (1, 1, True)
    assert row.failure_reasons == ((f"failed: the model failed: {INJECTED_FAILURE}", 1),)
    row = summarize("s", [expected, other_reason, untagged], settle_s=1, settle_limit_s=37)
    assert (row.failed, row.expected_failures) == (3, 1)
    assert "2 failed jobs not explained by an injected failure" in row.violations


def test_a_job_not_final_is_lost_and_the_scenario_never_settles() -> None:
    stuck = JobObservation("a", "RUNNING", watches=(WatchRecord((1, 2)),))
    times = [good("b", "p").complete_time_s, stuck.complete_time_s]
    settle = settle_time(times, 100.0)
    assert settle is None
    row = summarize("s", [good("b", "p"), stuck], settle_s=settle, settle_limit_s=37)
    assert row.lost == 1 and row.settle_s is None
    assert "1 lost (not final before the deadline)" in row.violations


def test_settling_too_slowly_breaks_the_bound() -> None:
    assert settle_time([101.0, 150.0], 100.0) == 50.0
    assert settle_time([90.0], 100.0) == 0.0  # done before the faults ended
    row = summarize("s", [good("a", "p")], settle_s=50.0, settle_limit_s=37)
    assert row.violations == ("settled in 50.0s, over the 37s bound",)


def test_problems_seen_outside_the_jobs_break_the_row() -> None:
    row = summarize(
        "s", [good("a", "p")], settle_s=1, settle_limit_s=37, broken=["worker0 exited (1)"]
    )
    assert row.violations == ("worker0 exited (1)",)


def test_reasons_group_jobs_without_their_tokens() -> None:
    assert reason_of("the model failed: boom <k0107>") == reason_of(
        "the model failed: boom <k0109>"
    )
    assert reason_of("") == "(no error)"
    assert len(reason_of("x" * 500)) == 101


def test_table_and_json() -> None:
    broken = summarize(
        "worker-kill", [JobObservation("a", "PENDING")], settle_s=None, settle_limit_s=37
    )
    fine = summarize("baseline", [good("b", "p")], settle_s=2.0, settle_limit_s=37)
    report = ChaosReport((fine, broken), machine="box (x86_64, 2 CPUs)")
    text = format_table(report)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["scenario", "jobs", "ok"]
    assert lines[1].split()[0] == "baseline" and lines[1].split()[-1] == "ok"
    assert lines[2].split()[0] == "worker-kill" and lines[2].split()[-1] == "BROKEN"
    assert "  VIOLATION: 1 lost (not final before the deadline)" in lines
    assert "INVARIANTS BROKEN" in text and "machine: box" in text
    data = json.loads(json.dumps(report.to_json()))
    assert data["passed"] is False
    assert [s["passed"] for s in data["scenarios"]] == [True, False]
    assert report.row("worker-kill") is broken
