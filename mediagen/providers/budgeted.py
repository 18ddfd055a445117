"""A :class:`Provider` whose every API call spends the shared request budget first.

Creates spend the create budget; get, cancel and lookups the other one (downloads come from
the delivery hosts and are not counted). A 429 pauses every worker
(:meth:`RequestBudget.throttled`) and the call is sent again after the pause, up to
:data:`MAX_TRIES` times: a 429 is a definite "not done", so even a create may be repeated
without paying twice. A read (get, find) answered 503 or 504 is sent again too, after a short
backoff, as the official client would have done unbudgeted (its retries are off); a create so
answered never is, since it may have made a prediction (:mod:`mediagen.providers.ambiguity`).
Every send spends its own token. The budget wait sits outside the call's own deadline, so a long
wait never makes a create look unanswered, and a create is recorded as requested (the
``before_send`` hook) only once its token is in hand: a look-up by marker then searches around
the time it was really sent, not minutes before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from mediagen.backoff import retry_delay
from mediagen.metrics import definitions as m
from mediagen.providers.base import BeforeSend, Prediction, Provider, ProviderError
from mediagen.providers.budget import BudgetExhausted, RequestBudget
from mediagen.providers.marker import Marker
from mediagen.providers.rates import Budget

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Tries of one call that keeps being throttled (or a read unavailable), before the error goes
#: to the job (a retry).
MAX_TRIES = 3
#: Answers after which a read is sent again: the provider, or a proxy before it, briefly away.
RESENT_READ_STATUSES = frozenset({503, 504})
#: Backoff before a read is sent again (full jitter, doubling), and the longest wait, hint or not.
RESEND_BASE_S = 0.5
RESEND_MAX_S = 10.0


class BudgetedProvider:
    """``inner`` within ``budget`` (which it closes with itself)."""

    def __init__(self, inner: Provider, budget: RequestBudget) -> None:
        self.inner = inner
        self.budget = budget

    async def _spend(
        self,
        budget: Budget,
        operation: str,
        call: Callable[[], Awaitable[_T]],
        *,
        read: bool = False,
    ) -> _T:
        for tries in range(1, MAX_TRIES + 1):
            try:
                await self.budget.acquire(budget)
            except BudgetExhausted as exc:
                # Nothing was sent: transient, never ambiguous.
                raise ProviderError(str(exc), transient=True) from exc
            try:
                return await call()
            except ProviderError as exc:
                if exc.status == 429:
                    m.PROVIDER_THROTTLED.labels(operation).inc()
                    if tries == MAX_TRIES:
                        raise
                    paused_s = await self.budget.throttled(exc.retry_after_s)
                    log.warning(
                        "provider throttled a %s; every worker pauses %.1fs", operation, paused_s
                    )
                elif read and exc.status in RESENT_READ_STATUSES and tries < MAX_TRIES:
                    hint = exc.retry_after_s
                    delay_s = retry_delay(tries, RESEND_BASE_S, RESEND_MAX_S, retry_after_s=hint)
                    await asyncio.sleep(min(delay_s, RESEND_MAX_S))
                else:
                    raise
        raise AssertionError("unreachable")  # the loop returns or raises

    async def create(
        self,
        model: str,
        model_input: Mapping[str, Any],
        *,
        marker: Marker | None = None,
        before_send: BeforeSend | None = None,
    ) -> Prediction:
        # ``before_send`` reaches the inner provider, so it runs after the wait for a token.
        return await self._spend(
            Budget.CREATE,
            "create",
            lambda: self.inner.create(model, model_input, marker=marker, before_send=before_send),
        )

    async def get(self, prediction_id: str) -> Prediction:
        return await self._spend(
            Budget.OTHER, "get", lambda: self.inner.get(prediction_id), read=True
        )

    async def cancel(self, prediction_id: str) -> Prediction:
        return await self._spend(Budget.OTHER, "cancel", lambda: self.inner.cancel(prediction_id))

    async def find_marked(
        self, marker: Marker, *, created_after: datetime, created_before: datetime
    ) -> list[Prediction]:
        # One token per lookup: its further pages (more than 100 predictions within seconds of
        # a lost create) are rare enough to ride on the budget's headroom.
        return await self._spend(
            Budget.OTHER,
            "find",
            lambda: self.inner.find_marked(
                marker, created_after=created_after, created_before=created_before
            ),
            read=True,
        )

    def download(self, url: str) -> AsyncIterator[bytes]:
        return self.inner.download(url)

    async def close(self) -> None:
        await self.inner.close()
        await self.budget.close()
