"""Where media bytes live; :func:`build_storage` is the one place a backend is chosen."""

from __future__ import annotations

from mediagen.config import ConfigError, Settings
from mediagen.storage.base import Storage, StorageError, StoredObject
from mediagen.storage.local import LocalStorage

__all__ = ["Storage", "StorageError", "StoredObject", "build_storage"]


def build_storage(settings: Settings) -> Storage:
    """The backend ``settings.storage_type`` names, not yet started."""
    if settings.storage_type == "local":
        return LocalStorage(
            settings.media_dir,
            settings.effective_public_url,
            secret_key=settings.secret_key,
            url_ttl_s=settings.media_url_ttl_s,
        )
    if settings.storage_type == "s3":
        # Imported here so the embedded (local) mode never loads botocore.
        from mediagen.storage.s3 import S3Storage

        return S3Storage(settings.s3)
    raise ConfigError(f"unknown storage type {settings.storage_type!r}")
