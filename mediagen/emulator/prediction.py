"""One emulated prediction and its JSON, read off its timeline at the time of a request."""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mediagen.emulator.inputs import Params, Target
from mediagen.emulator.logs import prediction_logs
from mediagen.emulator.outputs import ImageFile, OutputFile, OutputPlan
from mediagen.emulator.timeline import Timeline
from mediagen.providers.base import PredictionStatus


def new_prediction_id() -> str:
    """26 lowercase base32 characters, like ``gm3qorzdhgbfurvjtvhg6dckhu``."""
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(eq=False)
class EmulatedPrediction:
    id: str
    seq: int  # creation order; list pages and cursors use it
    target: Target
    input: dict[str, Any]
    params: Params
    outputs: OutputPlan
    created_at: datetime  # UTC wall clock; other timestamps are this plus timeline offsets
    t0: float  # event-loop clock at creation
    timeline: Timeline
    steps: int  # length of the tqdm bar in its logs
    error: str | None = None  # the message a failed prediction reports
    chosen_output: tuple[Any] | None = None  # (output,) set by an ``Output`` fault
    webhook: str | None = None
    webhook_events_filter: list[str] | None = None
    #: Set when a cancel cuts the timeline short, to wake sync (``Prefer: wait``) requests.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def status_at(self, now: float) -> PredictionStatus:
        return self.timeline.status_at(now - self.t0)

    def removed(self, now: float, retention_s: float) -> bool:
        """Retention: input, output, logs and files are gone this long after completion."""
        return now - self.t0 >= self.timeline.end_s + retention_s

    def interrupt(self, now: float, status: PredictionStatus = PredictionStatus.CANCELED) -> None:
        self.timeline = self.timeline.interrupted(now - self.t0, status)
        self.changed.set()

    def file(self, name: str, now: float, retention_s: float) -> OutputFile | None:
        """The named output file, if it exists at ``now`` and has not been removed."""
        if not self.timeline.output_ready(now - self.t0) or self.removed(now, retention_s):
            return None
        return next((f for f in self.outputs.files if f.name == name), None)

    def to_json(self, now: float, base_url: str, *, retention_s: float) -> dict[str, Any]:
        """The body Replicate would send at ``now``; strict-client safe (no null model, version
        or urls values)."""
        t = now - self.t0
        timeline = self.timeline
        status = timeline.status_at(t)
        removed = self.removed(now, retention_s)
        started = timeline.started_at(t)
        get_url = f"{base_url}/v1/predictions/{self.id}"
        body: dict[str, Any] = {
            "id": self.id,
            "model": self.target.model,
            "version": self.target.version,
            "input": None if removed else self.input,
            "logs": None if removed else self._logs(t, status, started),
            "output": None if removed or not timeline.output_ready(t) else self._output(base_url),
            "data_removed": removed,
            "error": self.error if status is PredictionStatus.FAILED else None,
            "status": status.value,
            "created_at": _iso(self.created_at),
            "started_at": self._at(started),
            "completed_at": self._at(timeline.end_s) if status.terminal else None,
            "urls": {
                "get": get_url,
                "cancel": f"{get_url}/cancel",
                "web": f"https://replicate.com/p/{self.id}",
            },
            "source": "api",
            "deployment": self.target.deployment,
            "webhook": self.webhook,
            "webhook_events_filter": self.webhook_events_filter,
        }
        if status.terminal:
            body["metrics"] = self._metrics(status)
        return body

    def _at(self, offset: float | None) -> str | None:
        return None if offset is None else _iso(self.created_at + timedelta(seconds=offset))

    def _logs(self, t: float, status: PredictionStatus, started: float | None) -> str:
        if started is None:
            return ""
        return prediction_logs(
            seed=self.params.seed,
            prompt=self.params.prompt,
            steps=self.steps,
            run_s=self.timeline.run_s,
            progress=self.timeline.progress_at(t),
            error=self.error if status is PredictionStatus.FAILED else None,
        )

    def _output(self, base_url: str) -> Any:
        if self.chosen_output is not None:
            return self.chosen_output[0]
        # Replicate serves files over https from replicate.delivery (and the 1.0.7 client wraps
        # only https:/data: URLs in FileOutput); on loopback the emulator serves plain http.
        urls = [f"{base_url}/files/{self.id}/{f.name}" for f in self.outputs.files]
        return urls if self.outputs.as_list else urls[0]

    def _metrics(self, status: PredictionStatus) -> dict[str, float | int]:
        metrics: dict[str, float | int] = {"total_time": round(self.timeline.end_s, 6)}
        if self.timeline.start_s is not None:
            metrics["predict_time"] = round(self.timeline.end_s - self.timeline.start_s, 6)
        images = sum(isinstance(f, ImageFile) for f in self.outputs.files)
        if status is PredictionStatus.SUCCEEDED and images:
            metrics["image_count"] = images
        return metrics
