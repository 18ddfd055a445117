"""How late each job noticed that its prediction ended: the job's ``complete_time`` less the
prediction's ``completed_at`` at the emulator (one machine, one clock). Polling alone notices an
end up to one poll interval late; a webhook within moments."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import httpx

from mediagen.providers.marker import Marker
from mediagen.v1 import job_pb2


def prediction_ends(items: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Job id -> when its latest finished prediction ended (Unix seconds), from list results
    (newest first) that carry a job marker. Pure."""
    ends: dict[str, float] = {}
    for item in items:
        marker = Marker.from_webhook_url(item.get("webhook"))
        completed = item.get("completed_at")
        if marker is None or not isinstance(completed, str) or marker.job_id in ends:
            continue
        with contextlib.suppress(ValueError):
            ends[marker.job_id] = datetime.fromisoformat(completed).timestamp()
    return ends


async def read_prediction_ends(emulator_url: str, token: str | None) -> dict[str, float]:
    """:func:`prediction_ends` of every prediction the emulator lists (after the measured phase:
    these reads are not the service's)."""
    items: list[Mapping[str, Any]] = []
    url: str | None = f"{emulator_url.rstrip('/')}/v1/predictions"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=30.0) as client:
        while url:
            page = (await client.get(url)).raise_for_status().json()
            items.extend(page.get("results") or [])
            url = page.get("next")
    return prediction_ends(items)


def lags_s(jobs: Iterable[job_pb2.Job], ends: Mapping[str, float]) -> list[float]:
    """Seconds from each succeeded job's prediction end to the job's completion. Pure."""
    return [
        job.complete_time.ToNanoseconds() / 1e9 - ends[job.id]
        for job in jobs
        if job.status == job_pb2.JOB_STATE_SUCCEEDED and job.id in ends
    ]
