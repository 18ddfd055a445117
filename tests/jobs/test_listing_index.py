"""ListJobs filtered by model reads the (tenant, model) index on PostgreSQL, for one version and
for every version of a model (``model = m OR model LIKE 'm:%'``): the very statements the store
runs, captured as they go out, then EXPLAINed on a few thousand jobs of a fresh database."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from mediagen.jobs.database import Database
from mediagen.jobs.listing import JobFilter
from mediagen.jobs.migrate import upgrade
from mediagen.jobs.store import JobStore
from mediagen.jobs.validation import validate_generate
from mediagen.v1 import media_generation_service_pb2 as pb
from tests.fixtures.database import POSTGRES_BASE, _admin, _raw

INDEX = "ix_jobs_tenant_model_create_time_id"
MODEL = "stability-ai/sdxl"
#: 4 % of the jobs are MODEL (half unversioned, half in two versions), the rest 17 others;
#: two tenants.
COPIES = """
INSERT INTO jobs ({columns})
SELECT {values} FROM jobs, generate_series(1, 3000) g WHERE jobs.id = $1
"""
CHANGED = {
    "id": "gen_random_uuid()::text",
    "tenant": "'t' || (g / 100 % 2)",  # by hundreds: each has every version
    "model": f"CASE WHEN g % 100 < 2 THEN '{MODEL}' WHEN g % 100 < 4 THEN '{MODEL}:v' || (g % 2) "
    "ELSE 'other/m' || (g % 17) END",
    "create_time": "now() - g * interval '1 second'",
    "request_id": "NULL",
    "prediction_id": "NULL",
}


@pytest.fixture
def postgres() -> Iterator[str]:
    name = f"mediagen_idx_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    yield f"{POSTGRES_BASE}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def store(postgres: str) -> AsyncIterator[JobStore]:
    await upgrade(postgres)
    db = Database(postgres)
    store = JobStore(db)
    request = pb.GenerateMediaRequest(prompt="a fox")
    spec = validate_generate(request, default_model=MODEL, allowed_models=(MODEL,))
    job, _ = await store.create(spec, tenant="t0")
    conn = await asyncpg.connect(_raw(postgres))
    try:
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'jobs'"
        )
        names = [row["column_name"] for row in columns]
        values = [CHANGED.get(name, name) for name in names]
        await conn.execute(
            COPIES.format(columns=", ".join(names), values=", ".join(values)), job.id
        )
        await conn.execute("ANALYZE jobs")
    finally:
        await conn.close()
    yield store
    await db.dispose()


def _capture() -> tuple[list[tuple[str, Any]], Any]:
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM jobs" in statement:
            sent.append((statement, parameters))

    return sent, record


async def test_listing_by_model_uses_the_model_index(postgres: str, store: JobStore) -> None:
    sent, record = _capture()
    event.listen(Engine, "before_cursor_execute", record)
    try:
        every = await store.list_jobs(tenant="t1", where=JobFilter(model=MODEL), limit=50)
        one = await store.list_jobs(tenant="t1", where=JobFilter(model=f"{MODEL}:v1"), limit=50)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert (every.total_size, len(every.jobs), one.total_size) == (60, 50, 15)
    assert {job.model for job in every.jobs} == {MODEL, f"{MODEL}:v1", f"{MODEL}:v0"}

    assert len(sent) == 4  # a count and a page for each
    conn = await asyncpg.connect(_raw(postgres))
    try:
        for statement, parameters in sent:
            plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *parameters)
            assert INDEX in json.dumps(json.loads(plan)), (statement, plan)
    finally:
        await conn.close()
