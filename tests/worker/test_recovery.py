"""The runner after a create without a definite answer: real store (SQLite), the emulator through
the official client, in-memory storage. Each job must end with its own prediction, made once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio

from mediagen.config import Settings
from mediagen.emulator import Delay, Drop, RunningEmulator, ServerError, Throttle
from mediagen.emulator.faults import Route
from mediagen.events.bus import InProcessBus
from mediagen.jobs.database import Database
from mediagen.jobs.migrate import upgrade
from mediagen.jobs.models import JobRow
from mediagen.jobs.store import JobStore
from mediagen.jobs.validation import validate_generate
from mediagen.providers.base import PredictionStatus
from mediagen.providers.marker import Marker
from mediagen.providers.replicate import ReplicateProvider
from mediagen.storage.memory import MemoryStorage
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.worker.runner import JobRunner
from tests.fixtures.emulator import predictions_by_marker, wait_until

MODEL = "stability-ai/sdxl"
WEBHOOKS = "http://127.0.0.1:9/webhooks/replicate"  # nothing listens; only a marker
SETTINGS = Settings(
    poll_interval_s=0.02,
    poll_interval_max_s=0.05,
    retry_base_s=0.05,
    retry_max_s=0.1,
    lease_s=5.0,
    ambiguous_settle_s=2.0,  # well past the 0.8 s a "late" create below takes
    max_attempts=6,
)
TERMINAL = (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELED)


@dataclass
class Worker:
    store: JobStore
    runner: JobRunner
    emulator: RunningEmulator

    async def submit(self, prompt: str) -> str:
        spec = validate_generate(
            pb.GenerateMediaRequest(prompt=prompt), default_model=MODEL, allowed_models=(MODEL,)
        )
        job, _ = await self.store.create(spec, tenant="t")
        return job.id

    def start(self, job_id: str) -> None:
        asyncio.get_running_loop().create_task(self.runner.handle(job_id))

    async def finished(self, job_id: str, timeout_s: float = 15) -> job_pb2.Job:
        return await wait_until(
            lambda: self.store.get(job_id, tenant=None),
            lambda j: j.status in TERMINAL,
            timeout_s=timeout_s,
        )

    async def prediction_of(self, job_id: str) -> str | None:
        async with self.store.db.reading() as session:
            row = await session.get(JobRow, job_id)
            assert row is not None
            return row.prediction_id

    async def creates_by_job(self) -> Counter[str]:
        """Predictions at the emulator per job marker, read through its list endpoint."""
        return await predictions_by_marker(self.emulator.base_url)


@pytest_asyncio.fixture
async def worker(tmp_path: Path, emulator: RunningEmulator) -> AsyncIterator[Worker]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mediagen.db'}"
    await upgrade(url)
    db = Database(url)
    store = JobStore(db)
    provider = ReplicateProvider(
        api_token="t",
        base_url=emulator.base_url,
        connect_timeout_s=0.2,
        read_timeout_s=0.3,
        webhook_url=WEBHOOKS,
        output_hosts=(emulator.host_port,),  # its files are on loopback
    )
    runner: JobRunner | None = None

    async def requeue(job_id: str) -> None:
        assert runner is not None
        asyncio.get_running_loop().create_task(runner.handle(job_id))

    runner = JobRunner(SETTINGS, store, InProcessBus(), provider, MemoryStorage(), requeue=requeue)
    yield Worker(store, runner, emulator)
    await runner.drain(1.0)
    await provider.close()
    await db.dispose()


async def test_twin_jobs_each_recover_their_own_prediction(worker: Worker) -> None:
    # A's create is answered 502 after it took effect; B, identical, is created just after. The
    # old recovery (same model and input, newest first) would hand B's prediction to A.
    worker.emulator.emulator.inject(
        ServerError(route=Route.CREATE, status=502, after=True, times=1),
        Delay(route=Route.LIST, delay_s=0.15, times=None),  # B's create comes before A's lookup
    )
    a = await worker.submit("the same fox")
    worker.start(a)
    await wait_until(lambda: asyncio.sleep(0, len(worker.emulator.emulator.predictions)), bool)
    b = await worker.submit("the same fox")
    worker.start(b)

    done = [await worker.finished(a), await worker.finished(b)]

    assert [j.status for j in done] == [job_pb2.JOB_STATE_SUCCEEDED] * 2
    assert done[0].attempt >= 2  # A lost its first answer
    of_a, of_b = await worker.prediction_of(a), await worker.prediction_of(b)
    assert of_a is not None and of_b is not None and of_a != of_b
    assert await worker.creates_by_job() == {a: 1, b: 1}
    made = {p.id: Marker.from_webhook_url(p.webhook) for p in worker.emulator.emulator.predictions}
    assert made[of_a] == Marker(a, 1) and made[of_b] == Marker(b, 1)


async def test_a_prediction_another_job_holds_is_skipped_not_cancelled(worker: Worker) -> None:
    worker.emulator.emulator.inject(Drop(route=Route.CREATE, after=True, times=1))
    worker.emulator.emulator.inject(Delay(route=Route.LIST, delay_s=0.2, times=None))
    a = await worker.submit("a fox")
    worker.start(a)
    (lost,) = await wait_until(lambda: asyncio.sleep(0, worker.emulator.emulator.predictions), bool)
    # Another job (say, adopted by an older worker's recovery) holds A's lost prediction.
    other = await worker.submit("something else")
    assert await worker.store.claim(other, "elsewhere", 60)
    await worker.store.set_prediction(other, "elsewhere", lost.id)

    done = await worker.finished(a)

    assert done.status == job_pb2.JOB_STATE_SUCCEEDED
    mine = await worker.prediction_of(a)
    assert mine is not None and mine != lost.id
    assert await worker.prediction_of(other) == lost.id
    assert lost.status_at(time.monotonic()) is PredictionStatus.SUCCEEDED  # left to its job
    assert worker.emulator.emulator.stats_json()["requests"]["cancel"] == 0
    markers = [Marker.from_webhook_url(p.webhook) for p in worker.emulator.emulator.predictions]
    assert markers == [Marker(a, 1), Marker(a, 2)]


async def test_a_failing_list_endpoint_makes_the_job_retry_not_fail(worker: Worker) -> None:
    worker.emulator.emulator.inject(
        Drop(route=Route.CREATE, after=True, times=1),
        ServerError(route=Route.LIST, status=500, times=2),
    )
    job = await worker.submit("a patient fox")
    worker.start(job)

    done = await worker.finished(job)

    assert done.status == job_pb2.JOB_STATE_SUCCEEDED
    assert done.attempt >= 4  # lost create, two failed lookups, then recovered
    assert await worker.creates_by_job() == {job: 1}


async def test_a_create_that_lands_late_is_waited_for_not_repeated(worker: Worker) -> None:
    # The create reaches the emulator but is handled only after the client's 0.5 s deadline: the
    # first lookup finds nothing; the attempt waits out the settle time and finds it.
    worker.emulator.emulator.inject(Delay(route=Route.CREATE, delay_s=0.8, times=1))
    job = await worker.submit("a late fox")
    worker.start(job)

    done = await worker.finished(job)

    assert done.status == job_pb2.JOB_STATE_SUCCEEDED
    assert await worker.creates_by_job() == {job: 1}


async def test_a_5xx_that_made_nothing_is_looked_for_then_created_once(worker: Worker) -> None:
    worker.emulator.emulator.inject(ServerError(route=Route.CREATE, status=503, times=1))
    job = await worker.submit("an unlucky fox")
    worker.start(job)

    done = await worker.finished(job)

    lookups = worker.emulator.emulator.stats_json()["requests"]["list"]
    assert done.status == job_pb2.JOB_STATE_SUCCEEDED
    assert lookups == 2  # once at once, once after the settle time; both found nothing
    assert await worker.creates_by_job() == {job: 1}


async def test_a_definite_refusal_is_not_looked_for(worker: Worker) -> None:
    worker.emulator.emulator.inject(Throttle(route=Route.CREATE, retry_after_s=0, times=1))
    job = await worker.submit("a throttled fox")
    worker.start(job)

    done = await worker.finished(job)

    lookups = worker.emulator.emulator.stats_json()["requests"]["list"]
    assert done.status == job_pb2.JOB_STATE_SUCCEEDED
    assert lookups == 0
    assert await worker.creates_by_job() == {job: 1}


async def test_cancelled_while_waiting_for_a_late_create_it_ends_without_creating(
    worker: Worker,
) -> None:
    worker.emulator.emulator.inject(ServerError(route=Route.CREATE, status=503, times=1))
    job = await worker.submit("a fox that is cancelled")
    worker.start(job)
    stats = worker.emulator.emulator.stats_json
    await wait_until(lambda: asyncio.sleep(0, stats()["requests"]["list"]), bool)

    running, event = await worker.store.cancel(
        job, tenant=None
    )  # while the attempt waits to look again
    assert event is not None
    await worker.runner.bus.publish(event)  # as the servicer does
    done = await worker.finished(job)

    assert running.status == job_pb2.JOB_STATE_RUNNING and running.cancel_requested
    assert done.status == job_pb2.JOB_STATE_CANCELED
    assert stats()["requests"]["list"] == 2  # it still looked once more before giving up
    assert worker.emulator.emulator.predictions == []


async def test_a_create_answering_with_another_jobs_prediction_is_not_adopted(
    worker: Worker,
) -> None:
    # The answer is held back (within the deadline) while another job comes to hold the very
    # prediction it names: storing it is refused, and the job ends with a prediction of its own.
    worker.emulator.emulator.inject(Delay(route=Route.CREATE, delay_s=0.2, after=True, times=1))
    job = await worker.submit("a contested fox")
    other = await worker.submit("someone else")
    assert await worker.store.claim(other, "elsewhere", 60)
    worker.start(job)
    (contested,) = await wait_until(
        lambda: asyncio.sleep(0, worker.emulator.emulator.predictions), bool
    )
    await worker.store.set_prediction(other, "elsewhere", contested.id)

    done = await worker.finished(job)

    assert done.status == job_pb2.JOB_STATE_SUCCEEDED
    mine = await worker.prediction_of(job)
    assert mine is not None and mine != contested.id
    assert await worker.prediction_of(other) == contested.id
    assert worker.emulator.emulator.stats_json()["requests"]["cancel"] == 0
    assert await worker.creates_by_job() == {job: 2}  # the contested one, and its own
