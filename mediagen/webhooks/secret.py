"""The webhook signing secret: the configured one, or the account's, fetched and cached.

Fetched (``GET /v1/webhooks/default/secret`` with the service's Replicate token) on the first
webhook rather than at start, so a gateway starts while Replicate is unreachable. A signature
that does not match may mean the secret was rotated: :meth:`SigningSecret.newer` fetches it
again, at most once per ``refresh_every_s``, so forged requests cannot make the gateway hammer
Replicate. While a fetch fails, its error is given again for ``retry_failed_after_s`` before
the next try, for the same reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Fetch = Callable[[], Awaitable[str]]


class SigningSecret:
    """``configured`` wins; otherwise ``fetch`` gives the secret (raising ProviderError when
    Replicate cannot)."""

    def __init__(
        self,
        *,
        configured: str | None = None,
        fetch: Fetch | None = None,
        refresh_every_s: float = 60.0,
        retry_failed_after_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if configured is None and fetch is None:
            raise ValueError("a signing secret needs a configured value or a way to fetch it")
        self._value = configured
        self._fetch = None if configured is not None else fetch
        self._refresh_every_s = refresh_every_s
        self._retry_failed_after_s = retry_failed_after_s
        self._clock = clock
        self._fetched_at: float | None = None
        self._failure: Exception | None = None  # the last fetch's error, while it is recent
        self._lock = asyncio.Lock()

    async def current(self) -> str:
        if self._value is not None:
            return self._value
        async with self._lock:
            if self._value is None:
                at = self._fetched_at
                recent = at is not None and self._clock() - at < self._retry_failed_after_s
                if recent and self._failure is not None:
                    raise self._failure
                await self._load()
            assert self._value is not None  # set by _load or it raised
            return self._value

    async def newer(self) -> str | None:
        """The account's secret if it changed since it was fetched; None when it cannot have
        (configured) or was fetched too recently to ask again."""
        if self._fetch is None:
            return None
        async with self._lock:
            at = self._fetched_at
            if at is not None and self._clock() - at < self._refresh_every_s:
                return None
            before = self._value
            await self._load()
            return self._value if self._value != before else None

    async def _load(self) -> None:
        assert self._fetch is not None
        self._fetched_at = self._clock()  # a failed fetch counts too: no retry storm
        try:
            value = await self._fetch()
        except Exception as exc:
            self._failure = exc
            raise
        self._value, self._failure = value, None
