"""An in-memory :class:`~mediagen.storage.base.Storage` for tests, like httpx's MockTransport.

It keeps the seam's promises (an object appears only once its stream has ended; a failure leaves
nothing behind) and can be told to fail, so callers' retry paths can be tested without S3.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass

from mediagen.storage.base import StorageError, StoredObject


@dataclass(frozen=True)
class MemoryObject:
    data: bytes
    content_type: str


class MemoryStorage:
    """Objects in a dict; URLs are ``{base_url}/{key}`` and point nowhere."""

    def __init__(self, base_url: str = "memory://media") -> None:
        self.base_url = base_url.rstrip("/")
        self.objects: dict[str, MemoryObject] = {}
        self.started = False
        self.closed = False
        self._failures: deque[StorageError] = deque()

    def fail_next(self, *errors: StorageError) -> None:
        """Make the next ``put_stream`` calls raise these errors, one per call, in order.

        The stream is read to its end first, as a real upload that fails at completion would.
        """
        self._failures.extend(errors)

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def probe(self) -> None:
        """Always able to store."""

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str
    ) -> StoredObject:
        parts = [chunk async for chunk in chunks]
        if self._failures:
            raise self._failures.popleft()
        data = b"".join(parts)
        self.objects[key] = MemoryObject(data=data, content_type=content_type)
        return StoredObject(key=key, size_bytes=len(data))

    async def url_for(self, key: str) -> str:
        return f"{self.base_url}/{key}"

    async def exists(self, key: str) -> bool:
        return key in self.objects

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def delete_many(self, keys: Sequence[str]) -> frozenset[str]:
        for key in keys:
            self.objects.pop(key, None)
        return frozenset()
