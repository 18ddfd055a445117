"""Chaos batches: faults aimed at single jobs, in forms the emulator accepts."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from mediagen.chaos.plan import (
    INJECTED_FAILURE,
    SCENARIO_NAMES,
    Disruption,
    plan_batch,
    scenario_named,
    share,
)
from mediagen.emulator.faults import Delay, Drop, Outcome, fault_from_json


def test_share_rounds_and_is_never_zero_for_a_fault_asked_for() -> None:
    assert share(0.2, 10) == 2
    assert share(0.02, 10) == 1
    assert share(0.05, 50) == 3
    assert share(0.0, 10) == 0
    assert share(1.0, 7) == 7


def test_emulator_faults_are_aimed_one_job_each() -> None:
    scenario = scenario_named("emulator-faults")
    plan = plan_batch(8, scenario, 50, random.Random(1), run_tag="r1", delay_s=3.5)
    assert len(plan.jobs) == 50
    assert len({job.prompt for job in plan.jobs}) == 50
    rules = [fault_from_json(rule) for rule in plan.rules]  # the emulator's own parser
    for rule in rules:
        assert rule.match is not None
        assert sum(rule.match in job.prompt for job in plan.jobs) == 1
    kinds = Counter(
        (type(r).__name__, getattr(r, "route", None), getattr(r, "after", None)) for r in rules
    )
    assert kinds[("ServerError", "create", False)] == 10  # 20 % before
    assert kinds[("ServerError", "create", True)] == 10  # 20 % after
    assert kinds[("Throttle", "create", False)] == 3  # 5 %, rounded
    assert kinds[("Outcome", None, None)] == 1  # 2 %
    failing = [job for job in plan.jobs if job.expected_error]
    assert [job.expected_error for job in failing] == [INJECTED_FAILURE]
    outcome = next(r for r in rules if isinstance(r, Outcome))
    assert outcome.match is not None and outcome.match in failing[0].prompt
    assert INJECTED_FAILURE in outcome.error
    delays = [r for r in rules if isinstance(r, Delay)]
    assert len(delays) == 5 + 3 and all(r.delay_s == 3.5 for r in delays)  # 10 % after, 5 % before


def test_identical_pairs_lose_the_answer_of_their_first_create() -> None:
    plan = plan_batch(
        9, scenario_named("identical-pairs"), 7, random.Random(2), run_tag="r", delay_s=1
    )
    assert len(plan.jobs) == 7
    pairs = [plan.jobs[i : i + 2] for i in range(0, 6, 2)]
    for a, b in pairs:
        assert (a.prompt, a.seed, a.latency_s) == (b.prompt, b.seed, b.latency_s)
    assert len({a.prompt for a, _ in pairs}) == 3
    rules = [fault_from_json(rule) for rule in plan.rules]
    assert len(rules) == 3
    for rule, (a, _) in zip(rules, pairs, strict=True):
        assert isinstance(rule, Drop) and rule.after and rule.times == 1
        assert rule.match is not None and rule.match in a.prompt


def test_the_same_seed_gives_the_same_batch() -> None:
    scenario = scenario_named("everything")
    one = plan_batch(10, scenario, 20, random.Random(7), run_tag="r", delay_s=2)
    two = plan_batch(10, scenario, 20, random.Random(7), run_tag="r", delay_s=2)
    assert one == two


def test_a_baseline_batch_has_no_faults() -> None:
    plan = plan_batch(1, scenario_named("baseline"), 5, random.Random(3), run_tag="r", delay_s=2)
    assert plan.rules == () and all(job.expected_error is None for job in plan.jobs)


def test_scenarios() -> None:
    assert SCENARIO_NAMES[0] == "baseline" and SCENARIO_NAMES[-1] == "everything"
    everything = scenario_named("everything")
    assert set(everything.disruptions) == set(Disruption)
    assert everything.restarts_redis and everything.restarts_postgres
    assert not scenario_named("baseline").faults.any
    with pytest.raises(ValueError, match="unknown scenario 'nope'"):
        scenario_named("nope")


def test_tokens_of_two_scenarios_never_match_each_other() -> None:
    a = plan_batch(
        2, scenario_named("emulator-faults"), 30, random.Random(4), run_tag="r", delay_s=1
    )
    b = plan_batch(
        12, scenario_named("emulator-faults"), 30, random.Random(4), run_tag="r", delay_s=1
    )
    for rule in a.rules:
        assert not any(rule["match"] in job.prompt for job in b.jobs)
