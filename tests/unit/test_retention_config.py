"""Retention settings: read in days, 0 keeps everything (no pass runs), bad values refused at
start."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediagen.config import ConfigError, Settings
from mediagen.wiring import build_retention, open_core


def test_defaults_and_days_in_seconds() -> None:
    default = Settings.from_env({})
    assert (default.retention_s, default.retention_interval_s, default.retention_batch_size) == (
        30 * 86_400,
        600,
        100,
    )
    settings = Settings.from_env(
        {
            "MEDIAGEN_RETENTION_DAYS": "0.5",
            "MEDIAGEN_RETENTION_INTERVAL_S": "60",
            "MEDIAGEN_RETENTION_BATCH_SIZE": "1000",
        }
    )
    assert (settings.retention_s, settings.retention_interval_s) == (43_200, 60)
    assert settings.retention_batch_size == 1000


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MEDIAGEN_RETENTION_DAYS", "-1"),
        ("MEDIAGEN_RETENTION_DAYS", "a week"),
        ("MEDIAGEN_RETENTION_DAYS", "inf"),
        ("MEDIAGEN_RETENTION_DAYS", "nan"),
        ("MEDIAGEN_RETENTION_DAYS", "36501"),
        ("MEDIAGEN_RETENTION_INTERVAL_S", "0"),
        ("MEDIAGEN_RETENTION_BATCH_SIZE", "0"),
        ("MEDIAGEN_RETENTION_BATCH_SIZE", "1001"),
    ],
)
def test_bad_values_fail_at_start(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


async def test_zero_days_runs_no_pass_at_all(tmp_path: Path) -> None:
    keep = Settings.from_env({"MEDIAGEN_RETENTION_DAYS": "0"}).replace(data_dir=tmp_path)
    async with open_core(keep, worker=False) as core:
        assert build_retention(core) is None
    async with open_core(keep.replace(retention_s=1.0), worker=False) as core:
        retention = build_retention(core)
        assert retention is not None and retention.age_s == 1.0
