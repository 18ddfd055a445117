"""The emulator's pure parts: timelines, tqdm lines, pages, fault rules, inputs, headers."""

from __future__ import annotations

import pytest

from mediagen.emulator.api import cancel_after_s, prefer_wait_s
from mediagen.emulator.faults import (
    Delay,
    Drop,
    FaultPlan,
    Outcome,
    Route,
    ServerError,
    Throttle,
    fault_from_json,
    fault_to_json,
)
from mediagen.emulator.inputs import parse_params, target_for_model, target_for_version
from mediagen.emulator.logs import tqdm_line
from mediagen.emulator.pagination import Cursor, select_page
from mediagen.emulator.problems import Problem
from mediagen.emulator.timeline import Timeline
from mediagen.providers.base import PredictionStatus as S

# --- timeline ---------------------------------------------------------------------------------

RUN = Timeline.plan(latency_s=10.0, starting_s=1.0, finalize_s=0.0)


@pytest.mark.parametrize(
    ("t", "status", "progress", "output"),
    [
        (0.0, S.STARTING, 0.0, False),
        (0.99, S.STARTING, 0.0, False),
        (1.0, S.PROCESSING, 0.0, False),
        (5.5, S.PROCESSING, 0.5, False),
        (10.0, S.SUCCEEDED, 1.0, True),
        (99.0, S.SUCCEEDED, 1.0, True),
    ],
)
def test_timeline_of_a_successful_run(t: float, status: S, progress: float, output: bool) -> None:
    assert RUN.status_at(t) is status
    assert RUN.progress_at(t) == pytest.approx(progress)
    assert RUN.output_ready(t) is output


@pytest.mark.parametrize(
    ("outcome", "end_s", "started"),
    [(S.FAILED, 5.5, True), (S.CANCELED, 5.5, True), (S.ABORTED, 1.0, False)],
)
def test_planned_outcomes_end_midway_or_in_the_queue(
    outcome: S, end_s: float, started: bool
) -> None:
    timeline = Timeline.plan(latency_s=10.0, starting_s=1.0, finalize_s=0.0, outcome=outcome)
    assert (timeline.end_s, timeline.status_at(end_s), timeline.output_s) == (end_s, outcome, None)
    assert (timeline.started_at(end_s) is not None) is started


def test_finalize_gives_outputs_while_processing() -> None:
    timeline = Timeline.plan(latency_s=10.0, starting_s=1.0, finalize_s=2.0)
    assert timeline.status_at(8.5) is S.PROCESSING and timeline.output_ready(8.5)
    assert timeline.answer_s == 8.0


@pytest.mark.parametrize(
    ("at", "status", "expected", "started"),
    [
        (0.5, S.CANCELED, S.CANCELED, False),  # cancelled in the queue
        (4.0, S.CANCELED, S.CANCELED, True),
        (0.5, S.ABORTED, S.ABORTED, False),  # Cancel-After passed before the start
        (4.0, S.ABORTED, S.CANCELED, True),  # ... or during the run
    ],
)
def test_interrupting_a_run(at: float, status: S, expected: S, started: bool) -> None:
    cut = RUN.interrupted(at, status)
    assert (cut.end_s, cut.status_at(at), cut.output_s) == (at, expected, None)
    assert (cut.start_s is not None) is started
    assert cut.progress_at(99.0) == pytest.approx(max(0.0, (at - 1.0) / 9.0))


def test_interrupting_a_finished_run_changes_nothing() -> None:
    assert RUN.interrupted(10.0) == RUN


# --- logs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "step_s", "line"),
    [
        (0, 0.05, "  0%|          | 0/50 [00:00<?, ?it/s]"),
        (20, 0.05, " 40%|████      | 20/50 [00:01<00:01, 20.00it/s]"),
        (25, 0.09, " 50%|█████     | 25/50 [00:02<00:02, 11.11it/s]"),
        (3, 0.1, "  6%|▌         | 3/50 [00:00<00:04, 10.00it/s]"),
        (50, 2.0, "100%|██████████| 50/50 [01:40<00:00,  2.00s/it]"),
    ],
)
def test_tqdm_lines_look_like_tqdm(n: int, step_s: float, line: str) -> None:
    assert tqdm_line(n, 50, step_s) == line


# --- pagination -------------------------------------------------------------------------------

SEQS = list(range(10, 17))  # seven predictions, oldest first


def test_first_page_is_the_newest() -> None:
    page = select_page(SEQS, None, 3)
    assert (SEQS[page.lo : page.hi], page.previous) == ([14, 15, 16], None)
    assert page.next == Cursor("n", 14)


def test_next_then_previous_walks_back() -> None:
    second = select_page(SEQS, Cursor("n", 14), 3)
    assert SEQS[second.lo : second.hi] == [11, 12, 13]
    assert second.previous is not None
    back = select_page(SEQS, second.previous, 3)
    assert SEQS[back.lo : back.hi] == [14, 15, 16]


def test_last_page_has_no_next() -> None:
    last = select_page(SEQS, Cursor("n", 11), 3)
    assert (SEQS[last.lo : last.hi], last.next) == ([10], None)


def test_cursor_round_trips_and_rejects_garbage() -> None:
    assert Cursor.decode(Cursor("p", 42).encode()) == Cursor("p", 42)
    for token in ("", "!!!", Cursor("x", 1).encode()):
        with pytest.raises(ValueError):
            Cursor.decode(token)


# --- faults -----------------------------------------------------------------------------------


def test_rules_fire_their_number_of_times_in_order() -> None:
    plan = FaultPlan()
    plan.add(ServerError(route=Route.CREATE, times=2), Drop(route=None))
    taken = [plan.take(Route.CREATE, None, after=False) for _ in range(4)]
    assert [type(rule).__name__ if rule else None for rule in taken] == [
        "ServerError",
        "ServerError",
        "Drop",
        None,
    ]


def test_rules_respect_route_phase_and_match() -> None:
    plan = FaultPlan()
    plan.add(Delay(route=Route.GET, after=True, match="cat"))
    assert plan.take(Route.CREATE, "cat", after=True) is None
    assert plan.take(Route.GET, "cat", after=False) is None
    assert plan.take(Route.GET, "dog", after=True) is None
    assert plan.needs_subject(Route.GET) and not plan.needs_subject(Route.CREATE)
    assert plan.take(Route.GET, "a cat", after=True) is not None


def test_throttle_always_applies_before() -> None:
    plan = FaultPlan()
    plan.add(Throttle(after=True))
    assert plan.take(Route.GET, None, after=True) is None
    assert isinstance(plan.take(Route.GET, None, after=False), Throttle)


def test_outcomes_are_separate_from_request_faults() -> None:
    plan = FaultPlan()
    plan.add(Outcome(status=S.ABORTED, match="x"))
    assert plan.take(Route.CREATE, "x", after=False) is None
    assert plan.take_outcome("y") is None
    assert plan.take_outcome("xy") == Outcome(status=S.ABORTED, match="x")
    assert plan.pending() == []


@pytest.mark.parametrize(
    "rule",
    [
        ServerError(route=Route.GET, status=502, times=None, after=True),
        Throttle(retry_after_s=9, header=False, match="cat"),
        Delay(delay_s=0.25),
        Drop(route=Route.FILE),
        Outcome(status=S.CANCELED, error="x", times=3),
    ],
)
def test_rules_round_trip_through_json(rule: object) -> None:
    body = fault_to_json(rule)  # type: ignore[arg-type]
    body.pop("remaining")
    assert fault_from_json(body) == rule


# --- inputs -----------------------------------------------------------------------------------


def test_version_references() -> None:
    hex_id = "ab" * 32
    assert target_for_version(f"a/b:{hex_id}", {}).model == "a/b"
    assert target_for_version(hex_id, {hex_id: "x/y"}).model == "x/y"
    assert target_for_version("a/b", {}).version == "hidden"
    assert target_for_model("a", "b", deployment=True).deployment == "a/b"
    for bad in ("a/b:123", "ab" * 31, "no-slash", None, 7):
        with pytest.raises(Problem):
            target_for_version(bad, {})


def test_params_defaults_and_overrides() -> None:
    defaults = parse_params({"prompt": "p"}, default_width=64, default_height=32)
    assert (defaults.width, defaults.height, defaults.num_outputs, defaults.output_format) == (
        64,
        32,
        1,
        "png",
    )
    assert defaults.seed == parse_params({"prompt": "p"}, default_width=1, default_height=1).seed
    given = parse_params(
        {"width": 8, "seed": 0, "emulator_latency_s": 0, "emulator_output_bytes": 44},
        default_width=64,
        default_height=64,
    )
    assert (given.width, given.seed, given.latency_s, given.output_bytes) == (8, 0, 0.0, 44)


@pytest.mark.parametrize(
    "raw",
    [
        {"width": True},
        {"width": 7},
        {"num_outputs": 5},
        {"prompt": 3},
        {"emulator_output_bytes": 43},
        {"emulator_latency_s": "1"},
    ],
)
def test_bad_params_are_422(raw: dict[str, object]) -> None:
    with pytest.raises(Problem) as caught:
        parse_params(raw, default_width=64, default_height=64)
    assert caught.value.status == 422


# --- headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("wait", 60.0),
        ("wait=5", 5.0),
        ("wait=0", 1.0),
        ("wait=600", 60.0),
        ("respond-async", None),
        ("respond-async, wait=3", 3.0),
    ],
)
def test_prefer_wait(header: str | None, seconds: float | None) -> None:
    assert prefer_wait_s(header) == seconds


@pytest.mark.parametrize(
    ("header", "seconds"), [("1m", 60.0), ("30s", 30.0), ("1m30s", 90.0), ("250ms", 0.25)]
)
def test_cancel_after(header: str, seconds: float) -> None:
    assert cancel_after_s(header) == seconds


@pytest.mark.parametrize("header", ["", "soon", "5", "1m junk"])
def test_cancel_after_rejects_garbage(header: str) -> None:
    with pytest.raises(Problem):
        cancel_after_s(header)
