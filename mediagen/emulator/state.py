"""The emulator's state and its in-process API: predictions, stats and faults.

Tests hold the :class:`Emulator` directly (``running.emulator``) to arm faults and to count what
reached it; other processes do the same through ``/_emulator/...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from mediagen.emulator.config import EmulatorConfig
from mediagen.emulator.faults import Fault, FaultPlan, Route
from mediagen.emulator.inputs import HIDDEN_VERSION, Target, parse_params
from mediagen.emulator.outputs import OutputFile, plan_outputs
from mediagen.emulator.pagination import Cursor, select_page
from mediagen.emulator.prediction import EmulatedPrediction, new_prediction_id
from mediagen.emulator.problems import Problem, not_found
from mediagen.emulator.ratelimits import AccountBuckets
from mediagen.emulator.timeline import Timeline
from mediagen.emulator.webhooks import WebhookSender
from mediagen.providers.base import PredictionStatus
from mediagen.providers.rates import Budget, Rates

_WEBHOOK_EVENTS = {"start", "output", "logs", "completed"}


class Stats:
    """What reached the emulator since start (or the last reset)."""

    def __init__(self) -> None:
        self.requests: Counter[Route] = Counter()  # every call, faulted or not
        self.creates: Counter[str] = Counter()  # predictions made, by endpoint
        self.faults_applied = 0
        self.throttled: Counter[Budget] = Counter()  # calls refused by the rate limits


class Emulator:
    """An emulated Replicate account."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.faults = FaultPlan()
        self.stats = Stats()
        self.buckets = AccountBuckets(self.config.limits)
        self._by_id: dict[str, EmulatedPrediction] = {}
        self._ordered: list[EmulatedPrediction] = []  # creation order
        self._models_of: dict[str, str] = {}  # version id -> model, for bare-version creates
        self._seq = itertools.count()
        self.webhooks = WebhookSender(self.config, self.faults, self.render)

    # --- in-process API ------------------------------------------------------------------------

    def inject(self, *rules: Fault) -> None:
        """Arm fault rules (see :mod:`mediagen.emulator.faults`)."""
        self.faults.add(*rules)

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_limits(self, limits: Rates) -> None:
        """Enforce ``limits`` from now on, every account's buckets full."""
        self.buckets = AccountBuckets(limits)

    def throttle(self, account: str, budget: Budget) -> float | None:
        """Spend one call of ``account``'s ``budget``: None if allowed, else the seconds until
        it would be (the call is refused and counted)."""
        wait_s = self.buckets.spend(account, budget, time.monotonic())
        if wait_s is not None:
            self.stats.throttled[budget] += 1
        return wait_s

    @property
    def predictions(self) -> list[EmulatedPrediction]:
        """Every prediction created, oldest first."""
        return list(self._ordered)

    def reset(self) -> None:
        """Forget predictions, stats, faults and webhooks not sent yet; refill the rate limits."""
        self.faults.clear()
        self.stats = Stats()
        self.webhooks.forget()
        self.buckets = AccountBuckets(self.buckets.limits)
        self._by_id.clear()
        self._ordered.clear()
        self._models_of.clear()

    def stats_json(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "requests": {route.value: self.stats.requests[route] for route in Route},
            "creates": dict(self.stats.creates),
            "predictions": len(self._ordered),
            "active": sum(not p.status_at(now).terminal for p in self._ordered),
            "faults_applied": self.stats.faults_applied,
            "webhooks": dict(self.webhooks.counts),
            "throttled": {budget.value: self.stats.throttled[budget] for budget in Budget},
        }

    # --- the API's operations ----------------------------------------------------------------

    @property
    def models_of_versions(self) -> Mapping[str, str]:
        return self._models_of

    def create(
        self,
        target: Target,
        body: Mapping[str, Any],
        *,
        endpoint: str,
        cancel_after_s: float | None = None,
    ) -> EmulatedPrediction:
        """Start a prediction; :class:`Problem` 422 for input the emulated model rejects."""
        config = self.config
        raw_input = body.get("input", {})
        params = parse_params(
            raw_input, default_width=config.default_width, default_height=config.default_height
        )
        webhook, events = _webhook(body)
        outcome = self.faults.take_outcome(params.prompt)
        chosen = None if outcome is not None else self.faults.take_output(params.prompt)
        timeline = Timeline.plan(
            latency_s=config.latency_s if params.latency_s is None else params.latency_s,
            starting_s=config.starting_s,
            finalize_s=config.finalize_s,
            outcome=PredictionStatus.SUCCEEDED if outcome is None else outcome.status,
        )
        if cancel_after_s is not None:
            timeline = timeline.interrupted(cancel_after_s, PredictionStatus.ABORTED)
        prediction = EmulatedPrediction(
            id=new_prediction_id(),
            seq=next(self._seq),
            target=target,
            input=dict(raw_input),
            params=params,
            outputs=plan_outputs(target.model, params),
            created_at=datetime.now(UTC),
            t0=time.monotonic(),
            timeline=timeline,
            steps=config.progress_steps,
            error=None if outcome is None else outcome.error,
            chosen_output=None if chosen is None else (chosen.output,),
            webhook=webhook,
            webhook_events_filter=events,
        )
        self._by_id[prediction.id] = prediction
        self._ordered.append(prediction)
        if target.version != HIDDEN_VERSION:
            self._models_of[target.version] = target.model
        self.stats.creates[endpoint] += 1
        return prediction

    def get(self, prediction_id: str) -> EmulatedPrediction:
        prediction = self._by_id.get(prediction_id)
        if prediction is None:
            raise not_found()
        return prediction

    def cancel(self, prediction_id: str) -> EmulatedPrediction:
        """Cancel a running prediction; a finished one is returned unchanged."""
        prediction = self.get(prediction_id)
        prediction.interrupt(time.monotonic())
        return prediction

    def prompt_of(self, prediction_id: str) -> str | None:
        prediction = self._by_id.get(prediction_id)
        return None if prediction is None else prediction.params.prompt

    def render(self, prediction: EmulatedPrediction, base_url: str) -> dict[str, Any]:
        return prediction.to_json(time.monotonic(), base_url, retention_s=self.config.retention_s)

    async def wait_for_answer(self, prediction: EmulatedPrediction, timeout_s: float) -> bool:
        """Sync mode: wait until outputs exist or it ended, or ``timeout_s``. True if answered."""
        deadline = time.monotonic() + timeout_s
        while True:
            now = time.monotonic()
            ready_at = prediction.t0 + prediction.timeline.answer_s
            if now >= ready_at:
                return True
            if now >= deadline:
                return False
            # A cancel shortens the timeline and sets ``changed``; otherwise sleep it out.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(prediction.changed.wait(), min(ready_at, deadline) - now)

    def page(
        self,
        base_url: str,
        *,
        cursor: str | None,
        created_after: datetime | None,
        created_before: datetime | None,
    ) -> dict[str, Any]:
        """``GET /v1/predictions``: newest first, ``config.page_size`` per page."""
        try:
            position = None if cursor is None else Cursor.decode(cursor)
        except ValueError as exc:
            raise Problem(400, str(exc), title="Invalid cursor") from exc
        chosen = [
            p
            for p in self._ordered
            if (created_after is None or p.created_at > created_after)
            and (created_before is None or p.created_at < created_before)
        ]
        window = select_page([p.seq for p in chosen], position, self.config.page_size)
        filters = {
            key: value.isoformat()
            for key, value in (("created_after", created_after), ("created_before", created_before))
            if value is not None
        }

        def link(to: Cursor | None) -> str | None:
            if to is None:
                return None
            return f"{base_url}/v1/predictions?{urlencode({'cursor': to.encode(), **filters})}"

        return {
            "next": link(window.next),
            "previous": link(window.previous),
            "results": [self.render(p, base_url) for p in reversed(chosen[window.lo : window.hi])],
        }

    def output_file(self, prediction_id: str, name: str) -> OutputFile:
        prediction = self._by_id.get(prediction_id)
        found = (
            None
            if prediction is None
            else prediction.file(name, time.monotonic(), self.config.retention_s)
        )
        if found is None:
            raise not_found()
        return found


def _webhook(body: Mapping[str, Any]) -> tuple[str | None, list[str] | None]:
    webhook = body.get("webhook")
    events = body.get("webhook_events_filter")
    if webhook is not None and not isinstance(webhook, str):
        raise Problem(422, "- webhook: Invalid type. Expected: string\n", title="Invalid request")
    if events is not None and (
        not isinstance(events, list) or not all(e in _WEBHOOK_EVENTS for e in events)
    ):
        detail = f"- webhook_events_filter: Must be a list of {sorted(_WEBHOOK_EVENTS)}\n"
        raise Problem(422, detail, title="Invalid request")
    return webhook, events
