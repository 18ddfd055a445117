"""The chaos scenarios, and the plan of one batch: its jobs and the emulator faults aimed at
them. Pure: no I/O (randomness comes from the ``random.Random`` passed in).

Faults are aimed, not sprayed: each job's prompt carries a token unique to it (``<k0307>``:
scenario 3, job 7) and each emulator rule matches one token, once. So "20 % of creates answer
5xx" means one rule for each of 20 % of the jobs, every injected failure names the job it is
for, and a job failed on purpose is told apart from one the service failed.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from typing import Any, Final

#: Text of the injected model failures; a job failed on purpose has it in its error.
INJECTED_FAILURE: Final = "chaos: injected model failure"


class Disruption(enum.StrEnum):
    """What is done to the processes while a batch runs."""

    KILL_WORKERS = "kill-workers"  # SIGKILL a worker every few seconds, start a new one
    STOP_WORKER = "stop-worker"  # SIGSTOP a worker inside a transaction, longer than its lease
    RESTART_REDIS = "restart-redis"  # stop Redis, start it again empty
    RESTART_POSTGRES = "restart-postgres"  # pg_ctl restart (fast)
    STOP_POSTGRES = "stop-postgres"  # PostgreSQL down for a while, then back
    KILL_API = "kill-api"  # SIGKILL the API every watcher is on; they resume on the other


@dataclass(frozen=True)
class FaultMix:
    """Share of a batch's jobs hit by each emulator fault (each job at most once per kind)."""

    error_before: float = 0.0  # create answered 5xx before anything was made
    error_after: float = 0.0  # create made, its answer replaced by a 5xx
    drop_after: float = 0.0  # create made, the connection closed without an answer
    delay_after: float = 0.0  # create made, its answer held past the client's deadline
    delay_before: float = 0.0  # create handled only after the client gave up (made late)
    throttle: float = 0.0  # create answered 429 with Retry-After
    get_error: float = 0.0  # two polls answered 5xx
    failed: float = 0.0  # the prediction fails (an expected failure of the job)
    pairs: float = 0.0  # jobs in pairs with identical input whose first create loses its answer

    @property
    def any(self) -> bool:
        return any(value > 0 for value in vars(self).values())


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    disruptions: tuple[Disruption, ...] = ()
    faults: FaultMix = FaultMix()
    #: Every watcher on API 0 (submissions to API 1), at least this many streams in all.
    watchers_on_first_api: int = 0

    @property
    def restarts_redis(self) -> bool:
        return Disruption.RESTART_REDIS in self.disruptions

    @property
    def restarts_postgres(self) -> bool:
        return bool({Disruption.RESTART_POSTGRES, Disruption.STOP_POSTGRES} & set(self.disruptions))


EMULATOR_FAULTS: Final = FaultMix(
    error_before=0.2,
    error_after=0.2,
    drop_after=0.1,
    delay_after=0.1,
    delay_before=0.05,
    throttle=0.05,
    get_error=0.1,
    failed=0.02,
)

SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario("baseline", "no faults"),
    Scenario(
        "worker-kill",
        "a worker SIGKILLed every few seconds, a new one started",
        (Disruption.KILL_WORKERS,),
    ),
    Scenario(
        "worker-stop",
        "a worker SIGSTOPped inside a transaction for longer than its lease, then SIGCONT",
        (Disruption.STOP_WORKER,),
    ),
    Scenario(
        "redis-restart",
        "Redis stopped and started again empty; no process of ours restarted",
        (Disruption.RESTART_REDIS,),
    ),
    Scenario("postgres-restart", "PostgreSQL restarted (fast)", (Disruption.RESTART_POSTGRES,)),
    Scenario("postgres-stop", "PostgreSQL stopped for a while", (Disruption.STOP_POSTGRES,)),
    Scenario(
        "api-kill",
        "the API under 50 watchers SIGKILLed; they resume on the other API",
        (Disruption.KILL_API,),
        watchers_on_first_api=50,
    ),
    Scenario(
        "emulator-faults",
        "20 % 5xx before and after create, drops and late answers after create, late creates, "
        "5 % 429, 5xx polls, 2 % failed predictions",
        faults=EMULATOR_FAULTS,
    ),
    Scenario(
        "identical-pairs",
        "pairs of jobs with identical input; the first create of each loses its answer",
        faults=FaultMix(pairs=1.0),
    ),
    Scenario(
        "everything",
        "all of the above at once",
        tuple(Disruption),
        FaultMix(**{**vars(EMULATOR_FAULTS), "pairs": 0.2}),
        watchers_on_first_api=50,
    ),
)

SCENARIO_NAMES: Final = tuple(s.name for s in SCENARIOS)


def scenario_named(name: str) -> Scenario:
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIO_NAMES)}")


# --- one batch --------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    index: int
    prompt: str
    seed: int
    latency_s: float  # how long its prediction runs at the emulator
    expected_error: str | None = None  # set when a failure is injected on purpose


@dataclass(frozen=True)
class BatchPlan:
    jobs: tuple[JobSpec, ...]
    rules: tuple[dict[str, Any], ...]  # emulator fault rules, in their JSON form


def share(fraction: float, count: int) -> int:
    """How many of ``count`` jobs a fraction hits: at least one when it is not 0."""
    if fraction <= 0 or count <= 0:
        return 0
    return min(count, max(1, math.floor(fraction * count + 0.5)))


def plan_batch(
    scenario_no: int,
    scenario: Scenario,
    size: int,
    rng: random.Random,
    *,
    run_tag: str,
    delay_s: float,
    latency_s: tuple[float, float] = (1.0, 3.0),
) -> BatchPlan:
    """``size`` jobs for ``scenario`` and the fault rules aimed at them; ``delay_s`` is how
    long delayed answers are held (past the workers' read deadline)."""
    mix = scenario.faults
    paired = share(mix.pairs, size) // 2 * 2
    specs: list[JobSpec] = []
    rules: list[dict[str, Any]] = []
    for pair in range(paired // 2):
        token = f"<p{scenario_no:02d}{pair:03d}>"
        seed, latency = rng.randrange(2**31), rng.uniform(*latency_s)
        prompt = f"chaos {scenario.name} {run_tag} pair {token}"
        specs += [JobSpec(len(specs) + k, prompt, seed, latency) for k in range(2)]
        rules.append({"kind": "drop", "route": "create", "after": True, "match": token})
    singles = list(range(len(specs), size))
    tokens = {i: f"<k{scenario_no:02d}{i:03d}>" for i in singles}
    failing = set(rng.sample(singles, share(mix.failed, len(singles))))

    def aim(fraction: float, rule: dict[str, Any], *, times: int = 1) -> None:
        for i in rng.sample(singles, share(fraction, len(singles))):
            rules.append({**rule, "match": tokens[i], "times": times})

    statuses = (500, 502, 503, 504)
    aim(mix.error_before, {"kind": "error", "route": "create", "status": rng.choice(statuses)})
    aim(mix.throttle, {"kind": "throttle", "route": "create", "retry_after_s": 1})
    aim(mix.delay_before, {"kind": "delay", "route": "create", "delay_s": delay_s})
    aim(
        mix.error_after,
        {"kind": "error", "route": "create", "status": rng.choice(statuses), "after": True},
    )
    aim(mix.drop_after, {"kind": "drop", "route": "create", "after": True})
    aim(mix.delay_after, {"kind": "delay", "route": "create", "delay_s": delay_s, "after": True})
    aim(mix.get_error, {"kind": "error", "route": "get", "status": 503}, times=2)
    for i in sorted(failing):
        rules.append(
            {"kind": "outcome", "status": "failed", "error": f"{INJECTED_FAILURE} {tokens[i]}"}
            | {"match": tokens[i], "times": 1}
        )
    for i in singles:
        specs.append(
            JobSpec(
                i,
                f"chaos {scenario.name} {run_tag} {tokens[i]}",
                rng.randrange(2**31),
                rng.uniform(*latency_s),
                INJECTED_FAILURE if i in failing else None,
            )
        )
    return BatchPlan(tuple(specs), tuple(rules))
