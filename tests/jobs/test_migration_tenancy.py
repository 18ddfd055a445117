"""The tenancy migration on a database that already holds jobs: they go to the default tenant,
and request_id becomes unique per tenant instead of globally (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from mediagen.auth.principal import DEFAULT_TENANT
from mediagen.jobs.migrate import alembic_config
from tests.jobs.test_migrations import empty_database  # noqa: F401  (a fixture)

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
JOB = (
    "INSERT INTO jobs (id, {tenant}status, prompt, model, parameters, model_input, labels,"
    " request_id, progress, attempt, cancel_requested, next_attempt_at, last_sequence,"
    " create_time, update_time) VALUES (:id, {tenant_value}'succeeded', 'p', 'm', '{{}}', '{{}}',"
    " '{{}}', :rid, 1.0, 1, false, :now, 1, :now, :now)"
)
MEDIA = (
    "INSERT INTO media (id, job_id, position, kind, mime_type, storage_key, width, height,"
    " size_bytes, sha256, create_time) VALUES ('m1', 'j1', 0, 'image', 'image/png', 'j1/0.png',"
    " 8, 8, 10, :sha, :now)"
)


async def _run(url: str, *statements: tuple[str, dict[str, object]]) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            rows: list[tuple[object, ...]] = []
            for sql, params in statements:
                result = await connection.execute(text(sql), params)
                if result.returns_rows:
                    rows.extend(tuple(r) for r in result.all())
            return rows
    finally:
        await engine.dispose()


def _job(job_id: str, rid: str, tenant: str | None = None) -> tuple[str, dict[str, object]]:
    sql = JOB.format(
        tenant="tenant, " if tenant else "", tenant_value=":tenant, " if tenant else ""
    )
    params: dict[str, object] = {"id": job_id, "rid": rid, "now": NOW}
    if tenant:
        params["tenant"] = tenant
    return sql, params


def test_existing_rows_join_the_default_tenant(empty_database: str) -> None:  # noqa: F811
    config = alembic_config(empty_database)
    command.upgrade(config, "0001")
    asyncio.run(_run(empty_database, _job("j1", "r1"), (MEDIA, {"sha": "ab" * 32, "now": NOW})))

    command.upgrade(config, "head")
    tenants = asyncio.run(
        _run(
            empty_database,
            ("SELECT tenant FROM jobs", {}),
            ("SELECT tenant FROM media", {}),
        )
    )
    assert tenants == [(DEFAULT_TENANT,), (DEFAULT_TENANT,)]

    # The same request_id in another tenant is a new job; in the same tenant it is refused.
    asyncio.run(_run(empty_database, _job("j2", "r1", tenant="other")))
    with pytest.raises(IntegrityError):
        asyncio.run(_run(empty_database, _job("j3", "r1", tenant="other")))
    # A row without a tenant is refused rather than put anywhere.
    with pytest.raises(IntegrityError):
        asyncio.run(_run(empty_database, _job("j4", "r4")))
