from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from mediagen.storage import signing
from mediagen.storage.base import StorageError
from mediagen.storage.local import InvalidKey, LocalStorage

MiB = 1024 * 1024
SECRET = "local-test-secret"
NOW = 1_800_000_000.7


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
async def storage(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(
        tmp_path / "media",
        "http://media.test:8080/",
        secret_key=SECRET,
        url_ttl_s=600,
        clock=lambda: NOW,
    )
    await storage.start()
    return storage


def files_under(root: Path) -> list[str]:
    """Every file, hidden ones included, relative to ``root``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_stores_the_stream_under_its_key(storage: LocalStorage) -> None:
    data = os.urandom(3 * MiB + 17)

    stored = await storage.put_stream(
        "job1/0.png", chunked(data, 100_000), content_type="image/png"
    )

    assert stored.key == "job1/0.png"
    assert stored.size_bytes == len(data)
    path = storage.root / "job1" / "0.png"
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # another user's web server can read it
    assert files_under(storage.root) == ["job1/0.png"]
    assert await storage.exists("job1/0.png")
    assert not await storage.exists("job1/1.png")


async def test_url_is_a_signed_gateway_files_url(storage: LocalStorage) -> None:
    url = urlsplit(await storage.url_for("job1/0.png"))
    assert (url.scheme, url.netloc, url.path) == ("http", "media.test:8080", "/files/job1/0.png")
    query = parse_qsl(url.query)
    assert [name for name, _ in query] == ["expires", "signature"]
    assert dict(query)["expires"] == "1800000601"  # the clock rounded up, plus the lifetime
    signing.verify(SECRET, "job1/0.png", query, now=NOW + 600)
    with pytest.raises(signing.UrlRefused):
        signing.verify(SECRET, "job1/1.png", query, now=NOW)  # signs that key only
    with pytest.raises(signing.UrlRefused):
        signing.verify(SECRET, "job1/0.png", query, now=NOW + 601)  # until it expires
    assert storage.path_for("job1/0.png") == storage.root / "job1" / "0.png"


async def test_url_quotes_the_key_and_signs_it_unquoted(storage: LocalStorage) -> None:
    url = urlsplit(await storage.url_for("job1/a b?.png"))
    assert url.path == "/files/job1/a%20b%3F.png"
    signing.verify(SECRET, unquote(url.path.removeprefix("/files/")), parse_qsl(url.query), now=NOW)


async def test_a_new_stream_replaces_the_object(storage: LocalStorage) -> None:
    await storage.put_stream("job1/0.png", chunked(b"old" * 10, 7), content_type="image/png")
    await storage.put_stream("job1/0.png", chunked(b"new", 7), content_type="image/png")

    assert storage.path_for("job1/0.png").read_bytes() == b"new"
    assert files_under(storage.root) == ["job1/0.png"]


async def test_object_is_invisible_until_the_stream_ends(storage: LocalStorage) -> None:
    halfway = asyncio.Event()
    resume = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"a" * (2 * MiB)  # more than one write buffer: bytes are on disk by now
        halfway.set()
        await resume.wait()
        yield b"b"

    task = asyncio.create_task(storage.put_stream("job1/0.png", slow(), content_type="image/png"))
    await halfway.wait()

    (partial,) = files_under(storage.root)
    assert partial.startswith("job1/.0.png.")  # the bytes so far sit in a hidden temp file
    assert not await storage.exists("job1/0.png")
    assert not storage.path_for("job1/0.png").exists()
    resume.set()
    assert (await task).size_bytes == 2 * MiB + 1
    assert await storage.exists("job1/0.png")


async def test_failed_stream_leaves_no_file(storage: LocalStorage) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"a" * (2 * MiB)
        raise RuntimeError("download broke")

    with pytest.raises(RuntimeError, match="download broke"):
        await storage.put_stream("job1/0.png", failing(), content_type="image/png")

    assert files_under(storage.root) == []


async def test_cancelled_stream_leaves_no_file(storage: LocalStorage) -> None:
    started = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"a" * (2 * MiB)
        started.set()
        await asyncio.Event().wait()
        yield b""  # pragma: no cover - never reached

    task = asyncio.create_task(storage.put_stream("job1/0.png", stalls(), content_type="image/png"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert files_under(storage.root) == []


@pytest.mark.parametrize(
    "key",
    ["", "../escape.png", "job/../../escape.png", "/etc/passwd", "job//0.png", "job/./0.png",
     ".hidden", "job/.0.png.abc.part", "job\\..\\0.png", "job/0\x00.png"],
)  # fmt: skip
async def test_keys_that_could_leave_the_root_are_refused(storage: LocalStorage, key: str) -> None:
    with pytest.raises(InvalidKey) as caught:
        storage.path_for(key)
    assert caught.value.transient is False

    with pytest.raises(InvalidKey):
        await storage.put_stream(key, chunked(b"x", 1), content_type="image/png")
    with pytest.raises(InvalidKey):
        await storage.url_for(key)
    assert files_under(storage.root.parent) == []


async def test_filesystem_errors_become_storage_errors(storage: LocalStorage) -> None:
    (storage.root / "job1").write_bytes(b"a file where the job folder should be")

    with pytest.raises(StorageError) as caught:
        await storage.put_stream("job1/0.png", chunked(b"x", 1), content_type="image/png")
    assert isinstance(caught.value.__cause__, OSError)


async def test_delete_many_removes_files_and_their_emptied_folders(storage: LocalStorage) -> None:
    for key in ("job1/0.png", "job1/1.png", "job2/0.png"):
        await storage.put_stream(key, chunked(b"png", 3), content_type="image/png")
    # A directory where a file should be: unlink fails, even for root.
    (storage.root / "job3" / "0.png").mkdir(parents=True)

    kept = await storage.delete_many(["job1/0.png", "job1/1.png", "job3/0.png", "gone/0.png"])

    assert kept == {"job3/0.png"}
    assert files_under(storage.root) == ["job2/0.png"]
    assert not (storage.root / "job1").exists()  # no empty folder per deleted job
    assert storage.root.is_dir()
    assert await storage.delete_many(["job2/0.png", "../escape"]) == {"../escape"}
    assert sorted(p.name for p in storage.root.iterdir()) == ["job3"]


async def test_probe_writes_in_the_root_and_leaves_nothing(storage: LocalStorage) -> None:
    """Health's storage probe: a file really written (root ignores modes), then removed."""
    await storage.probe()
    assert files_under(storage.root) == []
    storage.root.rmdir()
    storage.root.write_bytes(b"")  # the directory replaced by a file
    with pytest.raises(StorageError, match="cannot write in"):
        await storage.probe()
