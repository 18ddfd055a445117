from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from mediagen.config import ConfigError, S3Settings, Settings
from mediagen.storage import build_storage, signing
from mediagen.storage.local import LocalStorage
from mediagen.storage.s3 import S3Storage


async def test_local_storage_lives_in_the_data_dir_and_links_to_the_gateway(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, host="0.0.0.0", http_port=9000, secret_key="k", media_url_ttl_s=90
    )

    storage = build_storage(settings)

    assert isinstance(storage, LocalStorage)
    assert storage.path_for("job/0.png") == tmp_path / "media" / "job" / "0.png"
    url = urlsplit(await storage.url_for("job/0.png"))
    assert f"{url.scheme}://{url.netloc}{url.path}" == "http://0.0.0.0:9000/files/job/0.png"
    query = parse_qsl(url.query)
    # Signed with SECRET_KEY, for MEDIAGEN_MEDIA_URL_TTL_S seconds.
    signing.verify("k", "job/0.png", query, now=time.time() + 85)
    with pytest.raises(signing.UrlRefused):
        signing.verify("k", "job/0.png", query, now=time.time() + 95)
    with pytest.raises(signing.UrlRefused):
        signing.verify("another key", "job/0.png", query, now=time.time())


def test_media_url_lifetime_comes_from_the_environment() -> None:
    assert Settings.from_env({}).media_url_ttl_s == 3600
    assert Settings.from_env({"MEDIAGEN_MEDIA_URL_TTL_S": "60"}).media_url_ttl_s == 60
    for bad in ("0", "-5", "soon"):
        with pytest.raises(ConfigError, match="MEDIAGEN_MEDIA_URL_TTL_S"):
            Settings.from_env({"MEDIAGEN_MEDIA_URL_TTL_S": bad})


def test_s3_storage_uses_the_s3_settings() -> None:
    s3 = S3Settings(bucket="outputs", endpoint_url="http://minio:9000", addressing_style="path")

    storage = build_storage(Settings(storage_type="s3", s3=s3))

    assert isinstance(storage, S3Storage)
    assert storage.settings is s3


def test_storage_type_comes_from_the_environment() -> None:
    settings = Settings.from_env({"STORAGE_TYPE": "S3", "S3_BUCKET_NAME": "outputs"})

    storage = build_storage(settings)

    assert isinstance(storage, S3Storage)
    assert storage.settings.bucket == "outputs"
