"""The database gauges (mediagen/metrics/gauges.py) on both databases: counts of the
non-final jobs, queue depth and age, and RUNNING jobs whose lease expired; and a scrape that
cannot reach the database still answers, counting the failure."""

from __future__ import annotations

from datetime import timedelta

from google.rpc import status_pb2

from mediagen.jobs.database import Database
from mediagen.jobs.store import JobStore, utcnow
from mediagen.metrics import definitions as m
from mediagen.metrics.gauges import DatabaseGauges, snapshot
from tests.fixtures.s3 import free_port
from tests.jobs.test_store import TENANT, spec


async def test_snapshot_counts_what_is_waiting_and_running(database: Database) -> None:
    store = JobStore(database, estimate_default_s=30)
    empty = await snapshot(database, utcnow())
    assert (empty.pending, empty.running, empty.due, empty.lease_expired) == (0, 0, 0, 0)
    assert empty.oldest_due_at is None and empty.oldest_age_s(utcnow()) == 0

    first, _ = await store.create(spec("one"), tenant=TENANT)
    await store.create(spec("two"), tenant=TENANT)
    third, _ = await store.create(spec("three"), tenant=TENANT)
    done, _ = await store.create(spec("four"), tenant=TENANT)
    claimed = await store.claim(first.id, "w1", lease_s=5)
    assert claimed is not None
    assert await store.claim(done.id, "w1", lease_s=5) is not None
    await store.fail(done.id, "w1", status_pb2.Status(code=10, message="no"))
    assert await store.claim(third.id, "w1", lease_s=5) is not None
    # A retry waits 60 s: PENDING, but not due, so not in the queue.
    await store.retry(
        third.id, "w1", status_pb2.Status(code=14, message="later"), 60.0, keep_prediction=False
    )

    later = utcnow() + timedelta(seconds=20)
    found = await snapshot(database, later)
    assert (found.pending, found.running, found.due) == (2, 1, 1)
    assert found.lease_expired == 1  # the 5 s lease of job one, 20 s on
    assert 19 < found.oldest_age_s(later) < 40
    assert (await snapshot(database, utcnow())).lease_expired == 0


async def test_refresh_sets_the_gauges_at_most_once_per_interval(database: Database) -> None:
    store = JobStore(database, estimate_default_s=30)
    await store.create(spec(), tenant=TENANT)
    gauges = DatabaseGauges(database, min_interval_s=3600)
    await gauges.refresh()
    assert m.QUEUE_DEPTH._value.get() == 1
    await store.create(spec("another"), tenant=TENANT)
    await gauges.refresh()  # within the interval: no query
    assert m.QUEUE_DEPTH._value.get() == 1
    await DatabaseGauges(database, min_interval_s=0).refresh()
    assert m.QUEUE_DEPTH._value.get() == 2
    assert m.JOBS_ACTIVE.labels(state="pending")._value.get() == 2


async def test_a_database_outage_is_counted_not_raised() -> None:
    # Nothing listens on this loopback port: every connection is refused at once.
    down = Database(f"postgresql+asyncpg://mediagen@127.0.0.1:{free_port()}/none")
    try:
        before = m.GAUGE_QUERY_FAILURES._value.get()
        await DatabaseGauges(down, min_interval_s=0, timeout_s=2.0).refresh()
        assert m.GAUGE_QUERY_FAILURES._value.get() == before + 1
    finally:
        await down.dispose()
