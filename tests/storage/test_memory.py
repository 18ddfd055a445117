from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mediagen.storage.base import StorageError
from mediagen.storage.memory import MemoryStorage


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_keeps_objects_and_their_content_type() -> None:
    storage = MemoryStorage()

    stored = await storage.put_stream("job/0.png", chunks(b"ab", b"c"), content_type="image/png")

    assert (stored.key, stored.size_bytes) == ("job/0.png", 3)
    assert storage.objects["job/0.png"].data == b"abc"
    assert storage.objects["job/0.png"].content_type == "image/png"
    assert await storage.exists("job/0.png")
    assert await storage.url_for("job/0.png") == "memory://media/job/0.png"


async def test_scripted_failures_store_nothing_then_recover() -> None:
    storage = MemoryStorage()
    storage.fail_next(StorageError("S3 is down", transient=True))

    with pytest.raises(StorageError, match="S3 is down"):
        await storage.put_stream("job/0.png", chunks(b"abc"), content_type="image/png")
    assert not await storage.exists("job/0.png")

    await storage.put_stream("job/0.png", chunks(b"abc"), content_type="image/png")
    assert await storage.exists("job/0.png")


async def test_failing_source_stores_nothing() -> None:
    storage = MemoryStorage()

    async def failing() -> AsyncIterator[bytes]:
        yield b"abc"
        raise RuntimeError("download broke")

    with pytest.raises(RuntimeError):
        await storage.put_stream("job/0.png", failing(), content_type="image/png")
    assert storage.objects == {}


async def test_delete_many_forgets_the_objects() -> None:
    storage = MemoryStorage()
    for key in ("a/0.png", "b/0.png"):
        await storage.put_stream(key, chunks(b"x"), content_type="image/png")

    assert await storage.delete_many(["a/0.png", "missing"]) == frozenset()

    assert list(storage.objects) == ["b/0.png"]
