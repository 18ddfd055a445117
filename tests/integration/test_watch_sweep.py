"""The watch sweep: an event committed but never published (its worker died before publishing)
still reaches the streams watching its job, within about one sweep; and the sweep costs one
statement per interval for all open streams together, and nothing once they have closed; a
stream merely behind on what the bus brought is left alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import pytest

from mediagen.api import watch_sweep
from mediagen.api.servicer import MediaGenerationServicer
from mediagen.api.watch_sweep import WatchSweep
from mediagen.config import Settings
from mediagen.events.bus import InProcessBus, Subscription
from mediagen.jobs.database import Database
from mediagen.jobs.store import JobStore
from mediagen.storage.memory import MemoryStorage
from mediagen.v1 import job_pb2
from tests.integration.test_quiet_watchers import Watcher, counted_statements, pending_job

SWEEP_S = 0.2


@pytest.fixture
def store(database: Database) -> JobStore:
    return JobStore(database)


def sweeping_servicer(store: JobStore) -> MediaGenerationServicer:
    async def enqueue(job_id: str) -> None:
        return None

    settings = Settings(watch_sweep_s=SWEEP_S)
    return MediaGenerationServicer(settings, store, InProcessBus(), MemoryStorage(), enqueue)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_event_never_published_reaches_the_watchers_within_a_sweep(
    store: JobStore,
) -> None:
    servicer = sweeping_servicer(store)
    job = await pending_job(store)
    watchers = [Watcher(servicer, job.id) for _ in range(3)]
    try:
        for watcher in watchers:
            assert (await watcher.next()).sequence == 1
        # Committed through the store alone: no bus message will ever announce it.
        claimed = await store.claim(job.id, "w", 30)
        assert claimed is not None
        started = time.monotonic()
        for watcher in watchers:
            event = await watcher.next(timeout_s=3 * SWEEP_S + 1.0)
            assert event.sequence == 2
            assert event.job.id == job.id
        assert time.monotonic() - started < 2 * SWEEP_S + 0.5
    finally:
        for watcher in watchers:
            await watcher.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_quiet_streams_cost_one_statement_per_sweep_together(store: JobStore) -> None:
    servicer = sweeping_servicer(store)
    jobs = [await pending_job(store) for _ in range(4)]
    watchers = [Watcher(servicer, jobs[n % len(jobs)].id) for n in range(200)]
    try:
        for watcher in watchers:
            # 200 streams open at once, each reading its backlog: generous on a loaded machine.
            assert (await watcher.next(timeout_s=30)).sequence == 1
        window_s = 5 * SWEEP_S
        with counted_statements() as statements:
            await asyncio.sleep(window_s)
        sweeps = window_s / SWEEP_S
        assert 1 <= len(statements) <= sweeps + 1
        assert all("FROM jobs" in s and " IN " in s for s in statements), statements
    finally:
        for watcher in watchers:
            await watcher.close()
    # No stream open: no sweep either (once a sweep already under way, left to finish rather
    # than lose its connection, and the streams' own shutdown are over).
    await asyncio.sleep(2 * SWEEP_S)
    with counted_statements() as statements:
        await asyncio.sleep(3 * SWEEP_S)
    assert statements == []


async def test_many_watched_jobs_are_read_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_sweep, "CHUNK", 10)
    asked: list[Sequence[str]] = []

    async def latest(job_ids: Sequence[str]) -> Mapping[str, int]:
        asked.append(job_ids)
        return {job_id: 2 if job_id == "j7" else 1 for job_id in job_ids if job_id != "j22"}

    sweep = WatchSweep(latest, interval_s=0)  # swept by hand here
    subs = {f"j{n}": Subscription() for n in range(25)}
    watching = [sweep.watching(job_id, sub, 1) for job_id, sub in subs.items()]
    for block in watching:
        block.__enter__()
    # j7 has a newer event; j22 is gone (deleted): both are woken, no one else.
    assert await sweep.sweep() == 2
    assert [len(chunk) for chunk in asked] == [10, 10, 5]
    assert await asyncio.wait_for(subs["j7"].get(), 1) is None
    assert await asyncio.wait_for(subs["j22"].get(), 1) is None
    for block in watching:
        block.__exit__(None, None, None)


async def test_a_stream_behind_on_what_the_bus_brought_is_not_woken() -> None:
    async def latest(job_ids: Sequence[str]) -> Mapping[str, int]:
        return dict.fromkeys(job_ids, 3)

    sweep = WatchSweep(latest, interval_s=0)  # swept by hand here
    busy, lost = Subscription(), Subscription()
    # Both have sent event 1. The bus brought ``busy`` events 2 and 3, still queued (a busy
    # server sends them soon); ``lost`` got only 2: 3 was committed but never announced.
    for sequence in (2, 3):
        busy.deliver(job_pb2.JobEvent(sequence=sequence, job=job_pb2.Job(id="j1")))
    lost.deliver(job_pb2.JobEvent(sequence=2, job=job_pb2.Job(id="j2")))
    with sweep.watching("j1", busy, 1), sweep.watching("j2", lost, 1):
        assert await sweep.sweep() == 1
    assert [(await busy.get()), (await busy.get())] == [
        job_pb2.JobEvent(sequence=s, job=job_pb2.Job(id="j1")) for s in (2, 3)
    ]
    brought = await lost.get()
    assert brought is not None and brought.sequence == 2
    assert await asyncio.wait_for(lost.get(), 1) is None  # woken: it reads the store
