"""What the run reads after a scenario, besides the APIs: the predictions at the emulator (its
list endpoint, as Replicate's), the database rows of the jobs, and the storage's objects."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from mediagen.config import Settings
from mediagen.jobs.models import JobEventRow, JobRow, MediaRow
from mediagen.providers.marker import Marker
from mediagen.storage import build_storage

_MAX_PAGES = 500  # 50,000 predictions: far above any bounded run


@dataclass
class Predictions:
    """Predictions at the emulator, by the job their marker names."""

    by_job: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    marker_job: dict[str, str] = field(default_factory=dict)  # any prediction id -> its job


async def emulator_predictions(
    emulator_url: str, token: str, since: datetime, job_ids: set[str]
) -> Predictions:
    """Every prediction created after ``since`` (less 5 s of slack) carrying a marker of one of
    ``job_ids``."""
    found = Predictions()
    after = (since - timedelta(seconds=5)).astimezone(UTC).isoformat()
    url: str | None = f"{emulator_url}/v1/predictions"
    params: dict[str, str] | None = {"created_after": after}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(_MAX_PAGES):
            if url is None:
                break
            page: dict[str, Any] = (
                (await client.get(url, params=params, headers=headers)).raise_for_status().json()
            )
            for prediction in page.get("results", []):
                marker = Marker.from_webhook_url(prediction.get("webhook"))
                if marker is None:
                    continue
                found.marker_job[str(prediction["id"])] = marker.job_id
                if marker.job_id in job_ids:
                    found.by_job[marker.job_id].append(str(prediction["id"]))
            url, params = page.get("next"), None  # the next link carries the query
        else:
            raise RuntimeError("the emulator's prediction list did not end")
    return found


@dataclass(frozen=True)
class Rows:
    prediction_of: Mapping[str, str | None]  # job id -> its stored prediction id
    media_keys: Mapping[str, list[str]]
    sequences: Mapping[str, list[int]]


async def database_rows(database_url: str, job_ids: Sequence[str]) -> Rows:
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0)
    prediction_of: dict[str, str | None] = {}
    media: dict[str, list[str]] = defaultdict(list)
    sequences: dict[str, list[int]] = defaultdict(list)
    try:
        async with engine.connect() as conn:
            ids = list(job_ids)
            for job_id, prediction_id in await conn.execute(
                select(JobRow.id, JobRow.prediction_id).where(JobRow.id.in_(ids))
            ):
                prediction_of[job_id] = prediction_id
            for job_id, key in await conn.execute(
                select(MediaRow.job_id, MediaRow.storage_key).where(MediaRow.job_id.in_(ids))
            ):
                media[job_id].append(key)
            for job_id, sequence in await conn.execute(
                select(JobEventRow.job_id, JobEventRow.sequence).where(JobEventRow.job_id.in_(ids))
            ):
                sequences[job_id].append(sequence)
    finally:
        await engine.dispose()
    return Rows(prediction_of, media, sequences)


async def present_keys(env: Mapping[str, str], keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` the deployment's storage holds."""
    storage = build_storage(Settings.from_env(env))
    await storage.start()
    try:
        return {key for key in keys if await storage.exists(key)}
    finally:
        await storage.close()


async def arm_faults(emulator_url: str, rules: Sequence[Mapping[str, Any]]) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        (await client.delete(f"{emulator_url}/_emulator/faults")).raise_for_status()
        if rules:
            reply = await client.post(f"{emulator_url}/_emulator/faults", json={"rules": rules})
            reply.raise_for_status()


async def clear_faults(emulator_url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        (await client.delete(f"{emulator_url}/_emulator/faults")).raise_for_status()


async def sessions_in_transaction(database_url: str, ports: set[int]) -> int:
    """Database sessions from local ``ports`` that are inside a transaction right now."""
    import asyncpg

    if not ports:
        return 0
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE xact_start IS NOT NULL "
            "AND client_port = ANY($1::int[]) AND pid <> pg_backend_pid()",
            sorted(ports),
        )
    finally:
        await conn.close()
    return int(count)
