"""The storage seam: put a stream of bytes under a key, get a URL for it.

Backends (``local``, ``s3``, ``memory``) are chosen once, by :func:`mediagen.storage.build_storage`
from the settings. Outputs are streamed through in chunks and never held whole in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StoredObject:
    """What a backend reports after storing an object."""

    key: str
    size_bytes: int


class StorageError(Exception):
    """The backend failed; ``transient`` says whether retrying may help."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class Storage(Protocol):
    """Where media bytes live."""

    async def start(self) -> None:
        """Prepare the backend (create folders, or the bucket when configured)."""

    async def close(self) -> None:
        """Release connections."""

    async def probe(self) -> None:
        """Raise :class:`StorageError` unless the backend can store objects now (health)."""
        ...

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str
    ) -> StoredObject:
        """Store the chunks under ``key`` (replacing any object there) and return its size.

        Raises :class:`StorageError` on failure; a partial object is never left visible.
        """
        ...

    async def url_for(self, key: str) -> str:
        """A URL a client can GET the object from (may expire, for presigned S3 URLs)."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object under ``key``, if there is one (a job's outputs that were copied
        before it was cancelled or failed)."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> frozenset[str]:
        """Remove the objects under ``keys`` (retention deletes a batch of jobs' media at once;
        a key with no object counts as removed) and return the keys whose objects could not be
        removed. Raises :class:`StorageError` when the backend fails as a whole."""
        ...
