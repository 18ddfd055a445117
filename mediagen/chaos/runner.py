"""Running the scenarios: one batch each, its faults, the wait, the evidence, the row.

Every wait is bounded: submissions are spread over ``spread_s``, disruptions take a known
time, and jobs get ``lease + reconcile interval + settle_margin_s`` after the faults are over
(and ``grace_s`` more, past which a job that is not final counts as lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mediagen.chaos import evidence
from mediagen.chaos.cluster import TOKEN, Cluster, ClusterOptions
from mediagen.chaos.load import Load, state_name
from mediagen.chaos.plan import (
    SCENARIO_NAMES,
    BatchPlan,
    Disruption,
    Scenario,
    plan_batch,
    scenario_named,
)
from mediagen.chaos.report import (
    ChaosReport,
    JobObservation,
    ScenarioRow,
    WatchRecord,
    settle_time,
    summarize,
)
from mediagen.chaos.sockets import ports_of

Log = Callable[[str], None]


@dataclass(frozen=True)
class ChaosOptions:
    jobs_per_scenario: int = 12
    scenarios: tuple[str, ...] = SCENARIO_NAMES
    cluster: ClusterOptions = field(default_factory=ClusterOptions)
    seed: int = 0  # 0: a random seed (printed, so a run can be repeated)
    spread_s: float = 4.0  # submissions of a batch are spread over this long
    kill_interval_s: float = 3.0  # worker-kill: one SIGKILL this often
    postgres_down_s: float = 20.0  # postgres-stop: how long it stays down
    settle_margin_s: float = 30.0  # jobs settle within lease + reconcile interval + this
    grace_s: float = 15.0  # waited past the bound before unfinished jobs count as lost
    latency_s: tuple[float, float] = (1.0, 3.0)  # the emulated predictions' run times

    def __post_init__(self) -> None:
        if not 1 <= self.jobs_per_scenario <= 1000:
            raise ValueError("jobs per scenario must be 1 to 1000")
        for name in self.scenarios:
            scenario_named(name)

    @property
    def settle_limit_s(self) -> float:
        c = self.cluster
        return c.lease_s + c.reconcile_interval_s + self.settle_margin_s


def machine() -> str:
    cpus = os.cpu_count() or 0
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return f"{platform.node()} ({platform.machine()}, {cpus} CPUs, load {load:.1f} at start)"


async def run_chaos(options: ChaosOptions, log: Log = print) -> ChaosReport:
    """Start the deployment, run each scenario, stop everything (also on failure or Ctrl-C)."""
    seed = options.seed or random.SystemRandom().randrange(1, 2**31)
    rng = random.Random(seed)
    log(f"chaos: seed {seed}, {options.jobs_per_scenario} jobs per scenario; starting processes")
    host = machine()
    cluster = await Cluster.start(options.cluster)
    rows: list[ScenarioRow] = []
    skipped: list[str] = []
    load = Load([api.target for api in cluster.apis])
    try:
        log(f"chaos: running in {cluster.root}")
        for no, name in enumerate(options.scenarios, start=1):
            scenario = scenario_named(name)
            if (scenario.restarts_postgres and not cluster.can_restart_postgres) or (
                scenario.restarts_redis and not cluster.can_restart_redis
            ):
                skipped.append(name)
                log(f"chaos: {name} skipped (a configured server it would restart)")
                continue
            log(f"chaos: {name}: {scenario.summary}")
            try:
                row = await _Scenario(no, scenario, cluster, load, options, rng).run()
            except Exception as exc:  # reported as the scenario's row; the others still run
                row = summarize(
                    name,
                    [],
                    settle_s=None,
                    settle_limit_s=options.settle_limit_s,
                    broken=[f"the scenario aborted: {type(exc).__name__}: {_first_line(exc)}"],
                )
                rows.append(row)
                log(f"chaos: {name}: aborted ({exc}); restoring the processes")
                await _Scenario(no, scenario, cluster, load, options, rng).heal()
                continue
            rows.append(row)
            log(f"chaos: {name}: {'ok' if row.passed else 'BROKEN: ' + '; '.join(row.violations)}")
    finally:
        try:
            await load.close()
        finally:
            cluster.stop()  # in this thread: it must finish even when the run is cancelled
    settings: dict[str, Any] = {
        "seed": seed,
        "jobs_per_scenario": options.jobs_per_scenario,
        "workers": options.cluster.workers,
        "storage": options.cluster.storage,
        "lease_s": options.cluster.lease_s,
        "reconcile_interval_s": options.cluster.reconcile_interval_s,
        "ambiguous_settle_s": options.cluster.ambiguous_settle_s,
        "settle_limit_s": options.settle_limit_s,
        "skipped": skipped,
    }
    return ChaosReport(tuple(rows), machine=host, settings=settings)


class _Scenario:
    def __init__(
        self,
        no: int,
        scenario: Scenario,
        cluster: Cluster,
        load: Load,
        options: ChaosOptions,
        rng: random.Random,
    ) -> None:
        self.no = no
        self.scenario = scenario
        self.cluster = cluster
        self.load = load
        self.options = options
        self.rng = rng
        self.notes: list[str] = []
        self.submitted = asyncio.Event()

    async def run(self) -> ScenarioRow:
        o = self.options
        delay_s = o.cluster.read_timeout_s + 1.5  # past the workers' deadline, within the settle
        plan = plan_batch(
            self.no,
            self.scenario,
            o.jobs_per_scenario,
            self.rng,
            run_tag=f"r{self.rng.randrange(10**6):06d}",
            delay_s=delay_s,
            latency_s=o.latency_s,
        )
        await evidence.arm_faults(self.cluster.emulator_url, plan.rules)
        started_at = datetime.now(UTC)
        errors_before = Counter(self.load.errors)
        # A hard stop for everything in the scenario: disruptions, spread and the settle bound.
        hard_deadline = time.monotonic() + self._disruption_budget_s() + o.settle_limit_s + 60
        submitted = await self._submit_and_disrupt(plan, hard_deadline)
        ids, watching, faults_over_at, unsubmitted = submitted
        deadline = min(hard_deadline, time.monotonic() + o.settle_limit_s + o.grace_s)
        watches = await _gather_until(watching, deadline)
        finals = await asyncio.gather(
            *(self.load.wait_final(job_id, deadline) for job_id in ids.values())
        )
        await evidence.clear_faults(self.cluster.emulator_url)
        broken = await self.heal()
        jobs = await self._observe(plan, ids, watches, finals, started_at)
        errors = Counter(self.load.errors)
        errors.subtract(errors_before)
        self.notes += [f"start failed, tried again: {what}" for what in self.cluster.failed_starts]
        self.cluster.failed_starts.clear()
        return summarize(
            self.scenario.name,
            jobs,
            settle_s=settle_time((j.complete_time_s for j in jobs), faults_over_at),
            settle_limit_s=o.settle_limit_s,
            unsubmitted=unsubmitted,
            client_errors={k: v for k, v in errors.items() if v > 0},
            notes=self.notes,
            broken=broken,
        )

    def _disruption_budget_s(self) -> float:
        o = self.options
        budget = o.spread_s + 10
        for d in self.scenario.disruptions:
            budget += {
                Disruption.KILL_WORKERS: o.kill_interval_s * 4 + 60,
                Disruption.STOP_WORKER: o.cluster.lease_s + 30,
                Disruption.RESTART_REDIS: 30.0,
                Disruption.RESTART_POSTGRES: 60.0,
                Disruption.STOP_POSTGRES: o.postgres_down_s + 60,
                Disruption.KILL_API: 60.0,
            }[d]
        return budget

    async def _submit_and_disrupt(
        self, plan: BatchPlan, deadline: float
    ) -> tuple[dict[int, str], dict[int, list[asyncio.Task[WatchRecord]]], float, int]:
        """Submit the batch (spread out) with its watchers while the disruptions run; the job
        ids, the watcher tasks, when the faults were over (epoch s), and submissions refused."""
        n = len(plan.jobs)
        one_api = self.scenario.watchers_on_first_api
        per_job = max(1, math.ceil(one_api / n)) if one_api else 1
        ids: dict[int, str] = {}
        watching: dict[int, list[asyncio.Task[WatchRecord]]] = {}

        async def one(i: int) -> None:
            spec = plan.jobs[i]
            await asyncio.sleep(self.options.spread_s * i / n)
            api = 1 if one_api else i % 2
            job_id = await self.load.submit(spec, api, deadline)
            if job_id is None:
                return
            ids[i] = job_id
            watch_api = 0 if one_api else (api + 1) % 2
            watching[i] = [
                asyncio.create_task(self.load.watch(job_id, watch_api, deadline))
                for _ in range(per_job)
            ]

        disruptions = asyncio.create_task(self._disrupt())
        try:
            await asyncio.gather(*(one(i) for i in range(n)))
            self.submitted.set()
            submitted_at = time.time()
            await asyncio.wait_for(disruptions, max(1.0, deadline - time.monotonic()))
        except BaseException:
            disruptions.cancel()
            for tasks in watching.values():
                for task in tasks:
                    task.cancel()
            raise
        return ids, watching, max(submitted_at, time.time()), n - len(ids)

    # --- disruptions ----------------------------------------------------------------------

    async def _disrupt(self) -> None:
        """Run the scenario's disruptions: the database ones in turn, the others alongside."""
        steps: dict[Disruption, Callable[[], Awaitable[None]]] = {
            Disruption.KILL_WORKERS: self._kill_workers,
            Disruption.STOP_WORKER: self._stop_worker,
            Disruption.RESTART_REDIS: self._restart_redis,
            Disruption.KILL_API: self._kill_api,
        }
        database = [d for d in self.scenario.disruptions if d not in steps]

        async def in_turn() -> None:
            for d in database:
                await (
                    self._restart_postgres if d is Disruption.RESTART_POSTGRES else self._stop_pg
                )()

        await asyncio.gather(
            in_turn(), *(steps[d]() for d in self.scenario.disruptions if d in steps)
        )

    async def _kill_workers(self) -> None:
        rounds = max(2, math.ceil((self.options.spread_s + 3) / self.options.kill_interval_s))
        for k in range(rounds):
            await asyncio.sleep(self.options.kill_interval_s)
            i = k % len(self.cluster.workers)
            self.cluster.workers[i].kill()
            await self.cluster.replace_worker(i)
        self.notes.append(f"{rounds} workers SIGKILLed and replaced")

    async def _stop_worker(self) -> None:
        """SIGSTOP a worker at a moment it has a database transaction open (found by its
        sockets in pg_stat_activity), hold it past its lease, then SIGCONT."""
        await asyncio.sleep(1.5)
        worker = self.cluster.workers[0]
        in_transaction = 0
        tries = 0
        for tries in range(1, 201):  # noqa: B007 (reported below)
            worker.pause()
            with contextlib.suppress(Exception):  # the database may be down meanwhile
                in_transaction = await evidence.sessions_in_transaction(
                    self.cluster.database_url, ports_of(worker.pid)
                )
            if in_transaction:
                break
            worker.resume()
            await asyncio.sleep(self.rng.uniform(0.005, 0.05))
        else:
            worker.pause()
        held_s = self.cluster.options.lease_s + 3
        await asyncio.sleep(held_s)
        worker.resume()
        state = f"with {in_transaction} transaction(s) open" if in_transaction else "(no open "
        state += "" if in_transaction else f"transaction seen in {tries} tries)"
        self.notes.append(f"{worker.name} SIGSTOPped {held_s:g}s {state}")

    async def _restart_redis(self) -> None:
        await asyncio.sleep(1.5)
        await self.cluster.stop_redis()
        await asyncio.sleep(2)
        await self.cluster.start_redis()
        self.notes.append("Redis stopped for 2s and started empty")

    async def _restart_postgres(self) -> None:
        await asyncio.sleep(1.5)
        await self.cluster.stop_postgres("fast")
        await self.cluster.start_postgres()
        self.notes.append("PostgreSQL restarted (fast)")

    async def _stop_pg(self) -> None:
        await asyncio.sleep(1.5)
        await self.cluster.stop_postgres("fast")
        await asyncio.sleep(self.options.postgres_down_s)
        await self.cluster.start_postgres()
        self.notes.append(f"PostgreSQL down for {self.options.postgres_down_s:g}s")

    async def _kill_api(self) -> None:
        await self.submitted.wait()
        await asyncio.sleep(0.5)  # every watcher has its stream open
        self.cluster.apis[0].proc.kill()
        await asyncio.sleep(3)
        await self.cluster.restart_api(0)
        self.notes.append("api0 SIGKILLed under its watchers, started again 3s later")

    async def heal(self) -> list[str]:
        """Processes that exited by themselves (a finding), started again for what follows."""
        await evidence.clear_faults(self.cluster.emulator_url)
        if self.cluster.postgres is not None and not self.cluster.postgres.running():
            await self.cluster.start_postgres()
        if self.cluster.redis is not None and self.cluster.redis.proc is None:
            await self.cluster.start_redis()
        found = self.cluster.exited_by_themselves()
        for i, worker in enumerate(self.cluster.workers):
            if not worker.alive():
                await self.cluster.replace_worker(i)
        for i, api in enumerate(self.cluster.apis):
            if not api.proc.alive():
                await self.cluster.restart_api(i)
        return [f"{what} by itself" for what in found]

    # --- evidence -------------------------------------------------------------------------

    async def _observe(
        self,
        plan: BatchPlan,
        ids: dict[int, str],
        watches: dict[int, list[WatchRecord]],
        finals: list[Any],
        started_at: datetime,
    ) -> list[JobObservation]:
        job_ids = list(ids.values())
        predictions = await evidence.emulator_predictions(
            self.cluster.emulator_url, TOKEN, started_at, set(job_ids)
        )
        rows = await evidence.database_rows(self.cluster.database_url, job_ids)
        keys = [key for job_id in job_ids for key in rows.media_keys.get(job_id, [])]
        present = await evidence.present_keys(self.cluster.group.env, keys)
        jobs = []
        for (i, job_id), job in zip(ids.items(), finals, strict=True):
            held = rows.prediction_of.get(job_id)
            media = rows.media_keys.get(job_id, [])
            complete = (
                job.complete_time.ToDatetime(UTC).timestamp()
                if job is not None and job.HasField("complete_time")
                else None
            )
            jobs.append(
                JobObservation(
                    job_id=job_id,
                    status=state_name(job.status) if job is not None else "",
                    error=job.error.message if job is not None else "",
                    expected_error=plan.jobs[i].expected_error,
                    media_keys=tuple(media),
                    media_present=sum(1 for key in media if key in present),
                    stored_sequences=tuple(sorted(rows.sequences.get(job_id, []))),
                    watches=tuple(watches.get(i, [])),
                    predictions=tuple(predictions.by_job.get(job_id, [])),
                    held_prediction=held,
                    held_marker_job=predictions.marker_job.get(held) if held else None,
                    complete_time_s=complete,
                )
            )
        return jobs


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]


async def _gather_until(
    watching: dict[int, list[asyncio.Task[WatchRecord]]], deadline: float
) -> dict[int, list[WatchRecord]]:
    """The watchers' records; each ends by itself at ``deadline`` (a little slack given)."""
    tasks = [task for group in watching.values() for task in group]
    if tasks:
        await asyncio.wait(tasks, timeout=max(1.0, deadline - time.monotonic() + 5))
    records: dict[int, list[WatchRecord]] = {}
    for i, group in watching.items():
        for task in group:
            if task.done() and not task.cancelled() and task.exception() is None:
                records.setdefault(i, []).append(task.result())
            else:
                task.cancel()
                records.setdefault(i, []).append(WatchRecord((), finished=False))
    return records
