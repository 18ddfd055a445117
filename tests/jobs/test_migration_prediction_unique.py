"""Migration 0002 on a database where the old recovery let two jobs share a prediction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import create_async_engine

from mediagen.jobs.migrate import alembic_config
from tests.jobs.test_migrations import empty_database  # noqa: F401  (a fixture)

_INSERT = text(
    "INSERT INTO jobs (id, status, prompt, model, parameters, model_input, labels, progress,"
    " attempt, cancel_requested, prediction_id, next_attempt_at, last_sequence, create_time,"
    " update_time) VALUES (:id, 'SUCCEEDED', 'p', 'm', '{}', '{}', '{}', 1.0, 1, false, :pred,"
    " :t, 1, :t, :t)"
)


async def _run(url: str, *statements: tuple[TextClause, dict[str, Any]]) -> list[tuple[str, str]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement, params in statements:
                await connection.execute(statement, params)
            rows = await connection.execute(text("SELECT id, prediction_id FROM jobs ORDER BY id"))
            return [(row[0], row[1]) for row in rows]
    finally:
        await engine.dispose()


def test_shared_predictions_stay_with_the_oldest_job(empty_database: str) -> None:  # noqa: F811
    config = alembic_config(empty_database)
    command.upgrade(config, "0001")
    t0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    rows = [
        ("job-b", "pred-shared", t0 + timedelta(seconds=1)),
        ("job-a", "pred-shared", t0),  # the oldest keeps it
        ("job-c", "pred-shared", t0 + timedelta(seconds=2)),
        ("job-d", "pred-own", t0),
        ("job-e", None, t0),
    ]
    inserts = [(_INSERT, {"id": i, "pred": p, "t": t}) for i, p, t in rows]
    asyncio.run(_run(empty_database, *inserts))

    command.upgrade(config, "0005_prediction_unique")

    assert asyncio.run(_run(empty_database)) == [
        ("job-a", "pred-shared"),
        ("job-b", None),
        ("job-c", None),
        ("job-d", "pred-own"),
        ("job-e", None),
    ]
    command.downgrade(config, "0001")
    command.upgrade(config, "head")
