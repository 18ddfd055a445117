"""Downloading one model output, with every hop checked and every byte bounded in time and size.

- Each hop (the URL, then each redirect, at most ``max_redirects``) must pass the host policy;
  its address is checked again when the connection is made (:mod:`mediagen.fetching.network`).
- The token goes only where :meth:`FetchPolicy.sends_token` says, never across a redirect to
  another origin.
- The whole download has a deadline, and after a short grace period it must keep an average of
  ``min_rate_bps``; a drip that would hold a job for half an hour fails instead.
- ``data:`` outputs are decoded a slice at a time within the same size limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from mediagen.fetching.data_uri import MalformedDataUri, data_uri_chunks
from mediagen.fetching.network import GuardedTransport
from mediagen.fetching.policy import (
    DOWNLOAD_TIMEOUT,
    DOWNLOAD_TOO_SLOW,
    TOO_MANY_REDIRECTS,
    FetchPolicy,
    Hop,
    Refused,
)
from mediagen.media.inspect import OutputTooLarge
from mediagen.providers.base import ProviderError
from mediagen.providers.retry_hint import retry_after_s
from mediagen.redaction import redact

_REDIRECTS = {301, 302, 303, 307, 308}
_TRANSIENT_STATUSES = {408, 429}


@dataclass(frozen=True)
class FetchLimits:
    """Bounds of one output download."""

    max_bytes: int = 2 * 1024**3
    deadline_s: float = 600.0  # connect to last byte, redirects included
    min_rate_bps: float = 16 * 1024  # average, once grace_s has passed; 0: no minimum
    grace_s: float = 10.0
    max_redirects: int = 5


class RateGuard:
    """When a download that started at ``start`` and has ``received`` bytes is too slow. Pure."""

    def __init__(self, min_rate_bps: float, grace_s: float, start: float) -> None:
        self.min_rate_bps = min_rate_bps
        self.grace_s = grace_s
        self.start = start

    def fails_at(self, received: int) -> float:
        """The clock time at which ``received`` bytes become too few."""
        if self.min_rate_bps <= 0:
            return float("inf")
        return self.start + max(self.grace_s, received / self.min_rate_bps)


def _refused(exc: Refused) -> ProviderError:
    return ProviderError(str(exc), transient=False, reason=exc.reason)


class OutputFetcher:
    """Streams outputs under a :class:`FetchPolicy` and :class:`FetchLimits`.

    ``transport`` replaces the guarded network (an ``httpx.MockTransport`` in tests); the host
    policy, redirects, token rule and limits still apply.
    """

    def __init__(
        self,
        policy: FetchPolicy,
        limits: FetchLimits,
        *,
        token: str | None,
        timeout: httpx.Timeout,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.policy = policy
        self.limits = limits
        self._token = token
        net_limits = httpx.Limits(max_connections=max_connections)
        self._client = httpx.AsyncClient(
            timeout=timeout,
            transport=transport or GuardedTransport(policy.private_ok, limits=net_limits),
            follow_redirects=False,  # each hop is checked here
            trust_env=False,
        )

    async def stream(self, url: str) -> AsyncIterator[bytes]:
        """The output's bytes; :class:`ProviderError` (with a ``reason`` for refusals and
        limits) or :class:`OutputTooLarge` otherwise."""
        if url.startswith("data:"):
            try:
                for chunk in data_uri_chunks(url, max_bytes=self.limits.max_bytes):
                    yield chunk
            except MalformedDataUri as exc:
                raise ProviderError(str(exc), transient=False) from exc
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.limits.deadline_s
        guard = RateGuard(self.limits.min_rate_bps, self.limits.grace_s, start)
        try:
            first = hop = self.policy.check(url)
            for _ in range(self.limits.max_redirects + 1):
                headers = self._headers(hop, first)
                request = self._client.build_request("GET", hop.url, headers=headers)
                async with asyncio.timeout_at(deadline):
                    response = await self._client.send(request, stream=True)
                try:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        hop = self.policy.check(
                            hop.url.join(response.headers["location"]), hop="redirect"
                        )
                        continue
                    _check_response(response, hop, self.limits.max_bytes)
                    async for chunk in self._body(response, hop, guard, deadline):
                        yield chunk
                    return
                finally:
                    await response.aclose()
            raise ProviderError(
                f"download of {first.host} redirected more than {self.limits.max_redirects} times",
                transient=False,
                reason=TOO_MANY_REDIRECTS,
            )
        except Refused as exc:
            raise _refused(exc) from exc
        except TimeoutError as exc:
            raise _timed_out(url, self.limits.deadline_s) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"download of {_shown(url)} failed: {type(exc).__name__}: {redact(str(exc))}",
                transient=True,
            ) from exc

    async def _body(
        self, response: httpx.Response, hop: Hop, guard: RateGuard, deadline: float
    ) -> AsyncIterator[bytes]:
        received = 0
        chunks = response.aiter_raw()
        while True:
            limit = min(deadline, guard.fails_at(received))
            try:
                async with asyncio.timeout_at(limit):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                if limit >= deadline:
                    raise _timed_out(str(hop.url), self.limits.deadline_s) from exc
                raise ProviderError(
                    f"download of {hop.host} slower than {self.limits.min_rate_bps:g} bytes/s "
                    f"({received} bytes in {limit - guard.start:.1f}s)",
                    transient=True,
                    reason=DOWNLOAD_TOO_SLOW,
                ) from exc
            received += len(chunk)
            yield chunk

    def _headers(self, hop: Hop, first: Hop) -> dict[str, str]:
        # identity: the size limit then counts what crosses the wire (no decompression bombs).
        headers = {"Accept-Encoding": "identity"}
        if self._token and self.policy.sends_token(hop, first):
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    async def aclose(self) -> None:
        await self._client.aclose()


def _check_response(response: httpx.Response, hop: Hop, max_bytes: int) -> None:
    status = response.status_code
    if status >= 400:
        message = f"download of {_shown(str(hop.url))} answered {status}"
        if status in _TRANSIENT_STATUSES or status >= 500:
            hint = retry_after_s(response.headers.get("retry-after"))
            raise ProviderError(message, transient=True, retry_after_s=hint)
        raise ProviderError(message, transient=False)  # 404/410: removed (retention), 401/403
    if status >= 300:
        message = f"download of {_shown(str(hop.url))} answered {status}"
        raise ProviderError(message, transient=False)
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise OutputTooLarge(max_bytes)


def _shown(url: str) -> str:
    """A URL fit for an error message: signed query strings redacted."""
    return redact(url)


def _timed_out(url: str, deadline_s: float) -> ProviderError:
    return ProviderError(
        f"download of {_shown(url)} did not finish within {deadline_s:g}s",
        transient=True,
        reason=DOWNLOAD_TIMEOUT,
    )
