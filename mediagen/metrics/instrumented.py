"""The provider and storage seams, measured: each wrapper counts and times the calls it passes
on and changes nothing else (the same results, the same exceptions)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from mediagen.metrics import definitions as m
from mediagen.providers.base import BeforeSend, Prediction, Provider, ProviderError
from mediagen.providers.marker import Marker
from mediagen.storage.base import Storage, StoredObject

_T = TypeVar("_T")


def provider_outcome(error: BaseException | None) -> str:
    """``ok``, or how a provider call failed: ``ambiguous`` (a create that may have happened),
    ``transient`` (may succeed later) or ``permanent``."""
    if error is None:
        return "ok"
    if isinstance(error, ProviderError):
        if error.ambiguous:
            return "ambiguous"
        return "transient" if error.transient else "permanent"
    return "error"  # cancelled, or a bug: neither the provider's answer


class MeasuredProvider:
    """A :class:`Provider` whose calls are counted by operation and outcome, and timed."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner

    async def _measure(self, operation: str, call: Awaitable[_T]) -> _T:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            return await call
        except BaseException as exc:
            error = exc
            raise
        finally:
            m.PROVIDER_LATENCY.labels(operation).observe(time.perf_counter() - started)
            m.PROVIDER_REQUESTS.labels(operation, provider_outcome(error)).inc()
            if operation == "create" and isinstance(error, ProviderError) and error.ambiguous:
                m.AMBIGUOUS_CREATES.inc()

    async def create(
        self,
        model: str,
        model_input: Mapping[str, Any],
        *,
        marker: Marker | None = None,
        before_send: BeforeSend | None = None,
    ) -> Prediction:
        return await self._measure(
            "create",
            self.inner.create(model, model_input, marker=marker, before_send=before_send),
        )

    async def get(self, prediction_id: str) -> Prediction:
        return await self._measure("get", self.inner.get(prediction_id))

    async def cancel(self, prediction_id: str) -> Prediction:
        return await self._measure("cancel", self.inner.cancel(prediction_id))

    async def find_marked(
        self, marker: Marker, *, created_after: datetime, created_before: datetime
    ) -> list[Prediction]:
        return await self._measure(
            "find",
            self.inner.find_marked(
                marker, created_after=created_after, created_before=created_before
            ),
        )

    async def download(self, url: str) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            async for chunk in self.inner.download(url):
                yield chunk
        except BaseException as exc:
            error = exc
            raise
        finally:
            m.PROVIDER_LATENCY.labels("download").observe(time.perf_counter() - started)
            m.PROVIDER_REQUESTS.labels("download", provider_outcome(error)).inc()

    async def close(self) -> None:
        await self.inner.close()


class MeasuredStorage:
    """A :class:`Storage` whose writes (put, delete) are counted, bytes too, and timed."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    async def _measure(self, operation: str, call: Awaitable[_T]) -> _T:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await call
            outcome = "ok"
            return result
        finally:
            m.STORAGE_LATENCY.labels(operation).observe(time.perf_counter() - started)
            m.STORAGE_OPERATIONS.labels(operation, outcome).inc()

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def probe(self) -> None:
        await self.inner.probe()

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str
    ) -> StoredObject:
        stored = await self._measure(
            "put", self.inner.put_stream(key, chunks, content_type=content_type)
        )
        m.STORAGE_BYTES.inc(stored.size_bytes)
        return stored

    async def url_for(self, key: str) -> str:
        return await self.inner.url_for(key)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def delete(self, key: str) -> None:
        await self._measure("delete", self.inner.delete(key))

    async def delete_many(self, keys: Sequence[str]) -> frozenset[str]:
        return await self._measure("delete_many", self.inner.delete_many(keys))
