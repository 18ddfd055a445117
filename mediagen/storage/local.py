"""Media stored as files under one root folder, served by the gateway at ``GET /files/{key}``.

URLs are signed and expire (:mod:`mediagen.storage.signing`), as S3 presigned URLs do: the gateway
serves a file only to a URL this class made, within its lifetime.

An object appears all at once: the bytes go to a hidden temporary file in the key's folder, which
is fsynced and renamed over the key only when the whole stream has arrived. Blocking file calls
run in worker threads so a large copy never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterable, Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import quote, urlencode

from mediagen.storage import signing
from mediagen.storage.base import StorageError, StoredObject

log = logging.getLogger(__name__)

#: Chunks are gathered up to this size before one threaded write, so small network chunks do not
#: cost a thread hop each.
WRITE_BUFFER_BYTES = 1024 * 1024

#: Mode of stored files: readable by a gateway or web server running as another user.
FILE_MODE = 0o644


class InvalidKey(StorageError):
    """A key that is empty, absolute, or would leave the storage root; never retried."""

    def __init__(self, key: str) -> None:
        super().__init__(f"invalid storage key {key!r}", transient=False)
        self.key = key


def _check_key(key: str) -> PurePosixPath:
    """The key as a relative path of plain names.

    Components may not start with a dot: that rules out ``.`` and ``..`` and keeps the temporary
    ``.*.part`` files out of reach of :meth:`LocalStorage.path_for`.
    """
    if not key or "\\" in key or "\x00" in key:
        raise InvalidKey(key)
    path = PurePosixPath(key)
    if path.is_absolute() or any(not part or part.startswith(".") for part in key.split("/")):
        raise InvalidKey(key)
    return path


class _TempFile:
    """A temporary file beside its destination; every method blocks (run it in a thread)."""

    def __init__(self, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        self.path = Path(name)
        self.dest = dest
        self.file: BinaryIO = os.fdopen(fd, "wb")

    def write(self, data: bytearray) -> None:
        self.file.write(data)

    def commit(self) -> None:
        # fsync first: after a crash the key holds the whole object or nothing, never a stub.
        self.file.flush()
        os.fsync(self.file.fileno())
        os.fchmod(self.file.fileno(), FILE_MODE)
        self.file.close()
        os.replace(self.path, self.dest)

    def discard(self) -> None:
        # Called while another error propagates: a failed cleanup must not replace it.
        with contextlib.suppress(OSError):
            self.file.close()
            self.path.unlink(missing_ok=True)


class LocalStorage:
    """Files under ``root``; URLs are ``{public_url}/files/{key}?expires=..&signature=..``,
    signed with ``secret_key`` and good for ``url_ttl_s`` seconds."""

    def __init__(
        self,
        root: Path,
        public_url: str,
        *,
        secret_key: str,
        url_ttl_s: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root).absolute()
        self.public_url = public_url.rstrip("/")
        self._secret_key = secret_key
        self._url_ttl_s = url_ttl_s
        #: Unix time in seconds, for signing (a test may pin it).
        self.clock = clock

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``; raises :class:`InvalidKey` if the key escapes the root.

        The gateway uses this to serve ``GET /files/{key}``: a bad key there is a 404.
        """
        return self.root.joinpath(*_check_key(key).parts)

    async def start(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        """Nothing to release: files are opened and closed per object."""

    async def probe(self) -> None:
        """Create and remove a hidden file in the root: writable, not just present (a read-only
        or full disk, or a root replaced by a file, fails here)."""
        try:
            await asyncio.to_thread(_write_probe, self.root)
        except OSError as exc:
            raise _storage_error(f"cannot write in {self.root}", exc) from exc

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str
    ) -> StoredObject:
        """Write the chunks to ``key`` atomically. ``content_type`` is not stored: the gateway
        derives it from the key's extension."""
        dest = self.path_for(key)
        try:
            temp = await asyncio.to_thread(_TempFile, dest)
        except OSError as exc:
            raise _storage_error(f"cannot create a file for {key!r}", exc) from exc
        try:
            size = await self._copy(key, chunks, temp)
            await self._io(key, temp.commit)
        except BaseException:
            # Shielded so a second cancellation cannot leave the temporary file behind.
            await asyncio.shield(asyncio.to_thread(temp.discard))
            raise
        return StoredObject(key=key, size_bytes=size)

    async def url_for(self, key: str) -> str:
        _check_key(key)
        query = signing.sign(self._secret_key, key, now=self.clock(), ttl_s=self._url_ttl_s)
        return f"{self.public_url}/files/{quote(key)}?{urlencode(query)}"

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_for(key).is_file)

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self._remove, key)
        except OSError as exc:
            raise _storage_error(f"cannot delete {key!r}", exc) from exc

    async def delete_many(self, keys: Sequence[str]) -> frozenset[str]:
        return await asyncio.to_thread(self._remove_all, list(keys))

    def _remove_all(self, keys: list[str]) -> frozenset[str]:
        """Blocking: every key in one thread hop; the keys that could not be removed."""
        failed: dict[str, Exception] = {}
        for key in keys:
            try:
                self._remove(key)
            except (InvalidKey, OSError) as exc:
                failed[key] = exc
        if failed:
            example, error = next(iter(failed.items()))
            log.warning("could not remove %d file(s), e.g. %r: %s", len(failed), example, error)
        return frozenset(failed)

    def _remove(self, key: str) -> None:
        """Blocking: the file, then its folders up to the root while they are empty (S3 has no
        folders: here too the one ``put_stream`` made goes with its last object)."""
        path = self.path_for(key)
        path.unlink(missing_ok=True)
        folder = path.parent
        while folder != self.root:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone): the folders above are not either
                return
            folder = folder.parent

    async def _copy(self, key: str, chunks: AsyncIterable[bytes], temp: _TempFile) -> int:
        size = 0
        pending = bytearray()
        # Errors raised by the source itself pass through untouched: they are not storage errors.
        async for chunk in chunks:
            size += len(chunk)
            pending += chunk
            if len(pending) >= WRITE_BUFFER_BYTES:
                data, pending = pending, bytearray()  # the thread gets a buffer nobody else grows
                await self._io(key, temp.write, data)
        if pending:
            await self._io(key, temp.write, pending)
        return size

    @staticmethod
    async def _io(key: str, func: Callable[..., None], *args: bytearray) -> None:
        try:
            await asyncio.to_thread(func, *args)
        except OSError as exc:
            raise _storage_error(f"cannot write {key!r}", exc) from exc


def _write_probe(root: Path) -> None:
    # A leading dot: no key can name it (see _check_key).
    fd, name = tempfile.mkstemp(prefix=".probe-", dir=root)
    os.close(fd)
    os.unlink(name)


def _storage_error(message: str, exc: OSError) -> StorageError:
    # A full or flaky disk may recover; a permission problem will not without an operator.
    return StorageError(f"{message}: {exc}", transient=not isinstance(exc, PermissionError))
