"""The provider seam: start a prediction, read its state, cancel it, download its outputs.

``ReplicateProvider`` implements it with the official ``replicate`` client, pointed at
Replicate or at the bundled emulator. Foreign errors (httpx, replicate, pydantic) become
:class:`ProviderError` inside the adapter and nowhere else.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mediagen.providers.marker import Marker


class PredictionStatus(enum.StrEnum):
    """Replicate's prediction states, plus ``aborted`` (deadline passed before it started)."""

    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    ABORTED = "aborted"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {
    PredictionStatus.SUCCEEDED,
    PredictionStatus.FAILED,
    PredictionStatus.CANCELED,
    PredictionStatus.ABORTED,
}


@dataclass(frozen=True)
class Prediction:
    """A provider prediction as the worker needs it."""

    id: str
    status: PredictionStatus
    logs: str = ""
    output_urls: tuple[str, ...] = ()
    error: str | None = None
    predict_time_s: float | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)


class ProviderError(Exception):
    """A provider call failed.

    ``transient``: retrying later may succeed (network, 5xx, 429); ``retry_after_s`` is the
    provider's own hint when it gave one. ``ambiguous``: a create may or may not have started a
    prediction (no definite answer came back: see :mod:`mediagen.providers.ambiguity`).
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        retry_after_s: float | None = None,
        ambiguous: bool = False,
        status: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after_s = retry_after_s
        self.ambiguous = ambiguous
        #: The provider's HTTP status, when it answered (404: no such prediction).
        self.status = status
        #: An ErrorInfo reason for the job's error (``OUTPUT_HOST_NOT_ALLOWED``), when one fits.
        self.reason = reason


#: Awaited just before a create is sent (see :meth:`Provider.create`).
BeforeSend = Callable[[], Awaitable[None]]


class Provider(Protocol):
    """A model provider."""

    async def create(
        self,
        model: str,
        model_input: Mapping[str, Any],
        *,
        marker: Marker | None = None,
        before_send: BeforeSend | None = None,
    ) -> Prediction:
        """Start one prediction, stored with ``marker`` so :meth:`find_marked` can find it.
        Never retried blindly: see ``ProviderError.ambiguous``.

        ``before_send`` is awaited when the request is about to go out (after any wait for a
        request budget) and again before each resend: the runner records the create as
        requested there, so a look-up by marker searches around the real send time."""
        ...

    async def get(self, prediction_id: str) -> Prediction:
        """Current state of a prediction."""
        ...

    async def cancel(self, prediction_id: str) -> Prediction:
        """Ask the provider to cancel; returns the prediction as the provider reports it."""
        ...

    async def find_marked(
        self, marker: Marker, *, created_after: datetime, created_before: datetime
    ) -> list[Prediction]:
        """Every prediction created between the two times that carries ``marker``, newest first.

        Recovers from an ambiguous create without paying twice: look for it before creating
        again. Never matches on model and input: two jobs may send the same ones. Pass times a
        little around the lost create, to allow for clock skew.
        """
        ...

    def download(self, url: str) -> AsyncIterator[bytes]:
        """Stream an output's bytes in chunks."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
