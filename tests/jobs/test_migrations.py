"""Migrations run both ways on SQLite and PostgreSQL, and match the models exactly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import mediagen.auth.models  # noqa: F401  (puts api_keys on Base.metadata)
from mediagen.jobs.migrate import alembic_config
from mediagen.jobs.models import Base
from tests.fixtures.database import _admin


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    from tests.fixtures.database import POSTGRES_BASE as base

    name = f"mediagen_mig_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    yield f"{base}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def _diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


async def _inspect(url: str) -> tuple[set[str], list[object]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(_tables)
            diff = await connection.run_sync(_diff)
        return tables, diff
    finally:
        await engine.dispose()


def test_upgrade_downgrade_upgrade_and_no_drift(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "head")
    tables, diff = asyncio.run(_inspect(empty_database))
    assert tables == {"jobs", "media", "job_events", "model_stats", "api_keys"}
    assert diff == []  # autogenerate would find nothing to add

    command.downgrade(config, "base")
    assert asyncio.run(_inspect(empty_database))[0] == set()

    command.upgrade(config, "head")
    tables, diff = asyncio.run(_inspect(empty_database))
    assert tables == {"jobs", "media", "job_events", "model_stats", "api_keys"} and diff == []
