"""Provider requests counted at the emulator (``GET /_emulator/stats``), sampled every second,
so a run can be held against Replicate's per-minute budget (reference/replicate.md §1.6)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from mediagen.bench.stats import max_in_window

#: Replicate's budget per account and minute.
CREATES_PER_MIN = 600
OTHERS_PER_MIN = 3000
#: Routes of Replicate's API besides creates; file downloads go to the delivery hosts.
_OTHER_ROUTES = ("get", "cancel", "list", "secret")


@dataclass(frozen=True)
class ProviderFigures:
    creates: int
    others: int
    max_creates_per_min: int  # the most in any 60 s of the run
    max_others_per_min: int
    webhooks_delivered: int  # completion webhooks the emulator delivered
    webhook_tries_failed: int  # deliveries refused or unanswered, each retried later


def split_counts(stats: Mapping[str, object]) -> tuple[int, int]:
    """(creates, other API requests) from the emulator's stats JSON. Pure."""
    requests = stats.get("requests")
    if not isinstance(requests, Mapping):
        return 0, 0
    creates = int(requests.get("create", 0))
    return creates, sum(int(requests.get(route, 0)) for route in _OTHER_ROUTES)


def webhook_counts(stats: Mapping[str, object]) -> tuple[int, int]:
    """(webhooks delivered, delivery tries failed) from the emulator's stats JSON. Pure."""
    webhooks = stats.get("webhooks")
    if not isinstance(webhooks, Mapping):
        return 0, 0
    return int(webhooks.get("delivered", 0)), int(webhooks.get("failed", 0))


class ProviderCounter:
    """Samples the emulator's counters from :meth:`start` to :meth:`stop`."""

    def __init__(self, emulator_url: str, interval_s: float = 1.0) -> None:
        self.url = emulator_url.rstrip("/") + "/_emulator/stats"
        self.interval_s = interval_s
        self._samples: list[tuple[float, int, int]] = []
        self._webhooks: list[tuple[int, int]] = []  # webhook_counts at each sample
        self._task: asyncio.Task[None] | None = None
        self._client = httpx.AsyncClient(timeout=5.0)

    async def _sample(self) -> None:
        reply = await self._client.get(self.url)
        reply.raise_for_status()
        stats = reply.json()
        creates, others = split_counts(stats)
        self._samples.append((time.monotonic(), creates, others))
        self._webhooks.append(webhook_counts(stats))

    async def start(self) -> None:
        await self._sample()
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            with contextlib.suppress(httpx.HTTPError):  # a missed sample only widens a window
                await self._sample()

    async def stop(self) -> ProviderFigures:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self._sample()
        finally:
            await self._client.aclose()
        first = self._samples[0]
        creates = [(t, c - first[1]) for t, c, _ in self._samples]
        others = [(t, o - first[2]) for t, _, o in self._samples]
        return ProviderFigures(
            creates=creates[-1][1],
            others=others[-1][1],
            max_creates_per_min=max_in_window(creates, 60.0),
            max_others_per_min=max_in_window(others, 60.0),
            webhooks_delivered=self._webhooks[-1][0] - self._webhooks[0][0],
            webhook_tries_failed=self._webhooks[-1][1] - self._webhooks[0][1],
        )
