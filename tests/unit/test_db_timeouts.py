"""The database timeouts: read from the environment, checked at start, sent to PostgreSQL."""

from __future__ import annotations

import pytest

from mediagen.config import ConfigError, Settings
from mediagen.jobs.database import Timeouts


def test_defaults_and_overrides() -> None:
    assert Settings.from_env({}).db_lock_timeout_s == 5.0
    settings = Settings.from_env(
        {
            "MEDIAGEN_DB_STATEMENT_TIMEOUT_S": "0",
            "MEDIAGEN_DB_LOCK_TIMEOUT_S": "1.5",
            "MEDIAGEN_DB_IDLE_IN_TRANSACTION_TIMEOUT_S": "120",
        }
    )
    assert (
        settings.db_statement_timeout_s,
        settings.db_lock_timeout_s,
        settings.db_idle_in_transaction_timeout_s,
    ) == (0.0, 1.5, 120.0)


def test_a_negative_timeout_fails_at_start() -> None:
    with pytest.raises(ConfigError, match="MEDIAGEN_DB_LOCK_TIMEOUT_S"):
        Settings.from_env({"MEDIAGEN_DB_LOCK_TIMEOUT_S": "-1"})


def test_postgres_settings_in_milliseconds_zero_is_off() -> None:
    assert Timeouts(statement_s=30, lock_s=0.0004, idle_in_transaction_s=0).postgres_settings() == {
        "statement_timeout": "30000",
        "lock_timeout": "1",  # a tiny limit stays a limit, not "off"
        "idle_in_transaction_session_timeout": "0",
    }
