from __future__ import annotations

from pathlib import Path

from mediagen.config import S3Settings, Settings
from mediagen.storage import build_storage
from mediagen.storage.local import LocalStorage
from mediagen.storage.s3 import S3Storage


async def test_local_storage_lives_in_the_data_dir_and_links_to_the_gateway(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, host="0.0.0.0", http_port=9000)

    storage = build_storage(settings)

    assert isinstance(storage, LocalStorage)
    assert storage.path_for("job/0.png") == tmp_path / "media" / "job" / "0.png"
    assert await storage.url_for("job/0.png") == "http://0.0.0.0:9000/files/job/0.png"


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
