"""Media stored in S3 or any S3-compatible server (MinIO, Ceph, moto), through aioboto3.

A stream smaller than one part is a single PutObject; anything larger is a multipart upload with
parts of ``part_size_bytes``, sent one at a time so at most one part is held in memory. A failed
or cancelled multipart upload is aborted, so no object and no billed parts are left behind.

This is the only module that sees botocore or aiohttp errors: :func:`_translate` turns them into
:class:`~mediagen.storage.base.StorageError`, transient or not, keeping the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncGenerator, AsyncIterable, Iterator, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

import aioboto3
import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from mediagen.config import ConfigError, S3Settings
from mediagen.storage.base import StorageError, StoredObject

logger = logging.getLogger(__name__)

#: S3 refuses parts smaller than this (except the last one).
MIN_PART_SIZE_BYTES = 5 * 1024 * 1024
#: SigV4 presigned URLs live at most seven days.
MAX_PRESIGN_EXPIRY_S = 7 * 24 * 3600
#: DeleteObjects takes at most this many keys per request.
MAX_DELETE_KEYS = 1000
ADDRESSING_STYLES = frozenset({"auto", "path", "virtual"})

#: Error codes that mean "try again later" even when the HTTP status is a 4xx.
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "OperationAborted",
        "PriorRequestNotComplete",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)
_TRANSIENT_STATUSES = frozenset({408, 429})
# Connection refused or reset, timeouts: the network or the server may come back.
_TRANSIENT_ERRORS = (HTTPClientError, BotoConnectionError, aiohttp.ClientError, TimeoutError)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the failed S3 call later may succeed."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in _TRANSIENT_CODES or status >= 500 or status in _TRANSIENT_STATUSES
    return isinstance(exc, _TRANSIENT_ERRORS)


@contextlib.contextmanager
def _translate(operation: str, target: str) -> Iterator[None]:
    """Turn a botocore or aiohttp error raised by an S3 call into a :class:`StorageError`."""
    try:
        yield
    except (BotoCoreError, ClientError, aiohttp.ClientError, TimeoutError) as exc:
        raise StorageError(
            f"S3 {operation} {target} failed: {_describe(exc)}", transient=is_transient(exc)
        ) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
    return str(exc) or type(exc).__name__


class _Part(NamedTuple):
    body: io.BytesIO  # positioned at its start
    size_bytes: int


async def _parts(chunks: AsyncIterable[bytes], size: int) -> AsyncGenerator[_Part, None]:
    """Regroup chunks into parts of exactly ``size`` bytes; the last may be shorter or empty.

    Always yields at least one part, so an empty stream becomes one empty object. Parts are
    BytesIO because botocore and aiohttp then send them in small reads, while a bytes or
    bytearray body is copied whole on its way to the socket (up to three copies, measured).
    """
    part, filled, yielded = io.BytesIO(), 0, False
    async for chunk in chunks:
        view = memoryview(chunk)
        while view:
            taken = min(size - filled, len(view))
            part.write(view[:taken])
            filled += taken
            view = view[taken:]
            if filled == size:
                part.seek(0)
                yield _Part(part, filled)
                yielded = True
                del part  # before starting the next, so two parts never coexist here
                part, filled = io.BytesIO(), 0
    if filled or not yielded:
        part.seek(0)
        yield _Part(part, filled)


class S3Storage:
    """Objects in ``settings.bucket``, through one client opened by :meth:`start`.

    ``max_attempts`` bounds botocore's own retries of each call (throttling, 5xx, connection
    errors), so one flaky part does not restart a whole upload; what still fails is a transient
    :class:`StorageError` for the job's retry.
    """

    def __init__(self, settings: S3Settings, *, max_attempts: int = 3) -> None:
        if settings.part_size_bytes < MIN_PART_SIZE_BYTES:
            raise ConfigError(f"S3 part size must be at least {MIN_PART_SIZE_BYTES} bytes")
        if settings.addressing_style not in ADDRESSING_STYLES:
            raise ConfigError(f"S3 addressing style must be one of {sorted(ADDRESSING_STYLES)}")
        if not 1 <= settings.presign_expiry_s <= MAX_PRESIGN_EXPIRY_S:
            raise ConfigError(f"S3 presign expiry must be 1..{MAX_PRESIGN_EXPIRY_S} seconds")
        self.settings = settings
        self._config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": settings.addressing_style},
            retries={"mode": "standard", "max_attempts": max_attempts},
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    async def start(self) -> None:
        if self._client is not None:
            return
        s = self.settings
        session = aioboto3.Session()
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(
            session.client(
                "s3",
                endpoint_url=s.endpoint_url,
                region_name=s.region,
                aws_access_key_id=s.access_key_id,
                aws_secret_access_key=s.secret_access_key,
                config=self._config,
            )
        )
        self._stack = stack
        if s.create_bucket:
            try:
                await self._ensure_bucket()
            except BaseException:
                await self.close()  # so that a later start() tries the bucket again
                raise

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def probe(self) -> None:
        """HeadBucket: the server answers and the bucket is there for these credentials."""
        client = self._require_client()
        with _translate("HeadBucket", self.settings.bucket):
            await client.head_bucket(Bucket=self.settings.bucket)

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str
    ) -> StoredObject:
        client = self._require_client()
        size = self.settings.part_size_bytes
        async with contextlib.aclosing(_parts(chunks, size)) as parts:
            first = await anext(parts)
            if first.size_bytes < size:
                with _translate("PutObject", self._target(key)):
                    await client.put_object(
                        Bucket=self.settings.bucket,
                        Key=key,
                        Body=first.body,
                        ContentType=content_type,
                    )
                return StoredObject(key=key, size_bytes=first.size_bytes)
            upload = await _MultipartUpload.create(client, self.settings.bucket, key, content_type)
            try:
                await upload.add(first)
                del first  # the part is sent: let it go before the next one is read
                async for part in parts:
                    await upload.add(part)
                    del part
                await upload.complete()
            except BaseException:
                # Shielded so that a cancelled job still aborts, and S3 keeps no orphan parts.
                await asyncio.shield(upload.abort())
                raise
        return StoredObject(key=key, size_bytes=upload.size_bytes)

    async def url_for(self, key: str) -> str:
        if self.settings.public_base_url:
            return f"{self.settings.public_base_url.rstrip('/')}/{quote(key)}"
        client = self._require_client()
        with _translate("presign GetObject", self._target(key)):
            url: str = await client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.settings.bucket, "Key": key},
                ExpiresIn=self.settings.presign_expiry_s,
            )
        return url

    async def exists(self, key: str) -> bool:
        client = self._require_client()
        try:
            with _translate("HeadObject", self._target(key)):
                await client.head_object(Bucket=self.settings.bucket, Key=key)
        except StorageError as exc:
            if _is_not_found(exc.__cause__):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        client = self._require_client()
        with _translate("DeleteObject", self._target(key)):
            await client.delete_object(Bucket=self.settings.bucket, Key=key)

    async def delete_many(self, keys: Sequence[str]) -> frozenset[str]:
        """DeleteObjects, up to :data:`MAX_DELETE_KEYS` keys per request; S3 reports the keys
        it could not delete one by one, and a request that fails raises (the keys of earlier
        requests are gone by then: deleting them again is harmless)."""
        client = self._require_client()
        unique = list(dict.fromkeys(keys))
        failed: dict[str, str] = {}
        for start in range(0, len(unique), MAX_DELETE_KEYS):
            chunk = unique[start : start + MAX_DELETE_KEYS]
            with _translate("DeleteObjects", f"{self.settings.bucket} ({len(chunk)} keys)"):
                response = await client.delete_objects(
                    Bucket=self.settings.bucket,
                    Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
                )
            for error in response.get("Errors", []):
                failed[error["Key"]] = f"{error.get('Code', '?')}: {error.get('Message', '')}"
        if failed:
            example, reason = next(iter(failed.items()))
            logger.warning("S3 kept %d object(s), e.g. %r: %s", len(failed), example, reason)
        return frozenset(failed)

    async def _ensure_bucket(self) -> None:
        bucket = self.settings.bucket
        try:
            with _translate("HeadBucket", bucket):
                await self._client.head_bucket(Bucket=bucket)
            return
        except StorageError as exc:
            if not _is_not_found(exc.__cause__):
                raise
        extra: dict[str, Any] = {}
        if self.settings.region != "us-east-1":  # us-east-1 refuses an explicit constraint
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.region}
        try:
            with _translate("CreateBucket", bucket):
                await self._client.create_bucket(Bucket=bucket, **extra)
        except StorageError as exc:
            # Another process created it between our HEAD and CREATE.
            if _error_code(exc.__cause__) != "BucketAlreadyOwnedByYou":
                raise

    def _require_client(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3Storage.start() must be awaited before use")
        return self._client

    def _target(self, key: str) -> str:
        return f"{self.settings.bucket}/{key}"


class _MultipartUpload:
    """One multipart upload in progress: its id and the parts S3 has acknowledged."""

    def __init__(self, client: Any, bucket: str, key: str, upload_id: str) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._upload_id = upload_id
        self._parts: list[dict[str, Any]] = []
        self.size_bytes = 0

    @classmethod
    async def create(
        cls, client: Any, bucket: str, key: str, content_type: str
    ) -> _MultipartUpload:
        with _translate("CreateMultipartUpload", f"{bucket}/{key}"):
            response = await client.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=content_type
            )
        return cls(client, bucket, key, response["UploadId"])

    async def add(self, part: _Part) -> None:
        number = len(self._parts) + 1
        with _translate(f"UploadPart {number}", f"{self._bucket}/{self._key}"):
            response = await self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=part.body,
            )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self.size_bytes += part.size_bytes

    async def complete(self) -> None:
        with _translate("CompleteMultipartUpload", f"{self._bucket}/{self._key}"):
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )

    async def abort(self) -> None:
        """Best effort: the original error matters more than a failed abort, which a bucket
        lifecycle rule for incomplete uploads cleans up later."""
        try:
            with _translate("AbortMultipartUpload", f"{self._bucket}/{self._key}"):
                await self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
                )
        except StorageError as exc:
            logger.warning("multipart upload %s left open: %s", self._upload_id, exc)


def _error_code(exc: BaseException | None) -> str:
    if isinstance(exc, ClientError):
        code: str = exc.response.get("Error", {}).get("Code", "")
        return code
    return ""


def _is_not_found(exc: BaseException | None) -> bool:
    return _error_code(exc) in _NOT_FOUND_CODES
