"""S3Storage against a real S3 API: the moto server from tests/fixtures/s3.py."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import botocore.session
import httpx
import pytest
from botocore.exceptions import ClientError

from mediagen.config import ConfigError, S3Settings
from mediagen.storage import s3
from mediagen.storage.base import StorageError
from mediagen.storage.s3 import S3Storage, is_transient
from tests.fixtures.s3 import free_port, make_s3_settings

MiB = 1024 * 1024
#: An endpoint for tests that never reach the server.
NOWHERE = "http://127.0.0.1:1"


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
async def storage(s3_settings: S3Settings) -> AsyncIterator[S3Storage]:
    storage = S3Storage(s3_settings)
    await storage.start()
    yield storage
    await storage.close()


@pytest.fixture
def raw(s3_server: str) -> Any:
    """A plain botocore client, to look at the bucket the way an operator would."""
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def keys(raw: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in raw.list_objects_v2(Bucket=bucket).get("Contents", [])]


def open_uploads(raw: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in raw.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


async def test_small_object_is_one_put_with_its_content_type(
    storage: S3Storage, raw: Any, s3_settings: S3Settings
) -> None:
    data = os.urandom(300 * 1024)

    stored = await storage.put_stream(
        "job1/0.png", chunked(data, 64 * 1024), content_type="image/png"
    )

    assert stored.key == "job1/0.png"
    assert stored.size_bytes == len(data)
    obj = raw.get_object(Bucket=s3_settings.bucket, Key="job1/0.png")
    assert obj["Body"].read() == data
    assert obj["ContentType"] == "image/png"
    assert "-" not in obj["ETag"]  # a multipart ETag ends in -<parts>
    assert await storage.exists("job1/0.png")
    assert not await storage.exists("job1/1.png")


async def test_large_object_is_uploaded_in_parts_of_the_configured_size(
    storage: S3Storage, raw: Any, s3_settings: S3Settings
) -> None:
    data = os.urandom(12 * MiB)

    # Odd-sized chunks, so parts have to be cut across chunk boundaries.
    stored = await storage.put_stream(
        "job2/0.mp4", chunked(data, 700_001), content_type="video/mp4"
    )

    assert stored.size_bytes == len(data)
    bucket = s3_settings.bucket
    obj = raw.get_object(Bucket=bucket, Key="job2/0.mp4")
    assert obj["Body"].read() == data
    assert obj["ContentType"] == "video/mp4"
    assert obj["ETag"].strip('"').endswith("-3")
    part_sizes = [
        raw.head_object(Bucket=bucket, Key="job2/0.mp4", PartNumber=n)["ContentLength"]
        for n in (1, 2, 3)
    ]
    assert part_sizes == [5 * MiB, 5 * MiB, 2 * MiB]
    assert keys(raw, bucket) == ["job2/0.mp4"]
    assert open_uploads(raw, bucket) == []


async def test_empty_stream_stores_an_empty_object(
    storage: S3Storage, raw: Any, s3_settings: S3Settings
) -> None:
    stored = await storage.put_stream("job3/0.bin", chunked(b"", 1), content_type="text/plain")

    assert stored.size_bytes == 0
    assert raw.get_object(Bucket=s3_settings.bucket, Key="job3/0.bin")["Body"].read() == b""


async def test_source_failure_mid_upload_aborts_and_leaves_nothing(
    storage: S3Storage, raw: Any, s3_settings: S3Settings
) -> None:
    bucket = s3_settings.bucket
    seen_open: list[str] = []

    async def failing() -> AsyncIterator[bytes]:
        for _ in range(7):
            yield os.urandom(MiB)
        seen_open.extend(open_uploads(raw, bucket))  # the first part is uploaded by now
        raise RuntimeError("download broke")

    with pytest.raises(RuntimeError, match="download broke"):
        await storage.put_stream("job4/0.png", failing(), content_type="image/png")

    assert seen_open == ["job4/0.png"]
    assert keys(raw, bucket) == []
    assert open_uploads(raw, bucket) == []


async def test_cancelled_upload_is_aborted(
    storage: S3Storage, raw: Any, s3_settings: S3Settings
) -> None:
    bucket = s3_settings.bucket
    stalled = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield os.urandom(MiB)
        stalled.set()
        await asyncio.Event().wait()
        yield b""  # pragma: no cover - never reached

    task = asyncio.create_task(storage.put_stream("job5/0.png", stalls(), content_type="image/png"))
    await stalled.wait()
    assert open_uploads(raw, bucket) == ["job5/0.png"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert keys(raw, bucket) == []
    assert open_uploads(raw, bucket) == []


async def test_presigned_url_serves_the_bytes(storage: S3Storage) -> None:
    data = os.urandom(4096)
    await storage.put_stream("job6/0.webp", chunked(data, 1000), content_type="image/webp")

    url = await storage.url_for("job6/0.webp")

    assert "X-Amz-Signature=" in url
    assert "X-Amz-Expires=3600" in url
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/webp"


async def test_public_base_url_gives_plain_urls() -> None:
    settings = make_s3_settings(NOWHERE, public_base_url="https://cdn.example.com/media/")

    # Not started: a plain URL needs no client and no signature.
    url = await S3Storage(settings).url_for("job7/0 a.png")

    assert url == "https://cdn.example.com/media/job7/0%20a.png"


async def test_start_creates_the_bucket_and_tolerates_an_existing_one(
    s3_settings: S3Settings, raw: Any
) -> None:
    with pytest.raises(ClientError):
        raw.head_bucket(Bucket=s3_settings.bucket)

    for _ in range(2):  # the second start finds the bucket there
        storage = S3Storage(s3_settings)
        await storage.start()
        await storage.close()

    raw.head_bucket(Bucket=s3_settings.bucket)


async def test_missing_bucket_is_a_permanent_error(s3_server: str) -> None:
    storage = S3Storage(make_s3_settings(s3_server, create_bucket=False))
    await storage.start()
    try:
        with pytest.raises(StorageError) as caught:
            await storage.put_stream("job8/0.png", chunked(b"x" * 10, 5), content_type="image/png")
    finally:
        await storage.close()

    assert caught.value.transient is False
    assert isinstance(caught.value.__cause__, ClientError)
    assert "NoSuchBucket" in str(caught.value)


async def test_unreachable_server_is_a_transient_error() -> None:
    settings = make_s3_settings(f"http://127.0.0.1:{free_port()}", create_bucket=False)
    storage = S3Storage(settings, max_attempts=1)
    await storage.start()
    try:
        with pytest.raises(StorageError) as caught:
            await storage.put_stream("job9/0.png", chunked(b"x", 1), content_type="image/png")
    finally:
        await storage.close()

    assert caught.value.transient is True
    assert caught.value.__cause__ is not None


async def test_delete_many_deletes_in_batches_and_ignores_missing_keys(
    storage: S3Storage, raw: Any, s3_settings: S3Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"job{i}/0.png" for i in range(5)]
    for name in names:
        await storage.put_stream(name, chunked(b"png", 3), content_type="image/png")
    monkeypatch.setattr(s3, "MAX_DELETE_KEYS", 2)  # three DeleteObjects requests

    kept = await storage.delete_many([*names[:4], "never/0.png", names[0]])

    assert kept == frozenset()
    assert keys(raw, s3_settings.bucket) == [names[4]]


async def test_delete_many_on_an_unreachable_server_is_a_transient_error() -> None:
    settings = make_s3_settings(f"http://127.0.0.1:{free_port()}", create_bucket=False)
    storage = S3Storage(settings, max_attempts=1)
    await storage.start()
    try:
        with pytest.raises(StorageError) as caught:
            await storage.delete_many(["job9/0.png"])
    finally:
        await storage.close()

    assert caught.value.transient is True


async def test_unreachable_server_at_start_is_a_transient_error() -> None:
    storage = S3Storage(make_s3_settings(f"http://127.0.0.1:{free_port()}"), max_attempts=1)

    with pytest.raises(StorageError) as caught:
        await storage.start()  # create_bucket: the HEAD of the bucket fails

    assert caught.value.transient is True
    await storage.close()


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": ""},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("SlowDown", 503, True),
        ("InternalError", 500, True),
        ("ServiceUnavailable", 503, True),
        ("ThrottlingException", 400, True),
        ("RequestTimeout", 400, True),
        ("TooManyRequests", 429, True),
        ("AccessDenied", 403, False),
        ("NoSuchBucket", 404, False),
        ("InvalidAccessKeyId", 403, False),
    ],
)
def test_error_classification(code: str, status: int, transient: bool) -> None:
    assert is_transient(client_error(code, status)) is transient


@pytest.mark.parametrize(
    "changes",
    [
        {"part_size_bytes": 5 * MiB - 1},
        {"addressing_style": "dns"},
        {"presign_expiry_s": 0},
        {"presign_expiry_s": 8 * 24 * 3600},
    ],
)
def test_bad_settings_are_refused_at_construction(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        S3Storage(make_s3_settings(NOWHERE, **changes))


async def test_use_before_start_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="start"):
        await S3Storage(make_s3_settings(NOWHERE)).exists("x")


async def test_probe_is_head_bucket(storage: S3Storage, raw: Any, s3_settings: S3Settings) -> None:
    """Health's storage probe: fine while the bucket is there, a StorageError once it is not."""
    await storage.probe()
    raw.delete_bucket(Bucket=s3_settings.bucket)
    with pytest.raises(StorageError, match="HeadBucket"):
        await storage.probe()
