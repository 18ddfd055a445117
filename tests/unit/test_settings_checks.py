"""Settings that make no sense (an empty queue name, a zero pool, a negative interval) stop a
process at start with a message naming the variable, instead of failing later or quietly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mediagen.config import ConfigError, Settings

REFUSED = [
    ("MEDIAGEN_QUEUE_NAME", ""),
    ("MEDIAGEN_QUEUE_NAME", "  "),
    ("MEDIAGEN_RATE_LIMIT_PREFIX", ""),
    ("MEDIAGEN_PROVIDER_BUDGET_PREFIX", ""),
    ("MEDIAGEN_DB_POOL_SIZE", "0"),
    ("MEDIAGEN_DB_MAX_OVERFLOW", "-1"),
    ("MEDIAGEN_WORKER_CONCURRENCY", "0"),
    ("MEDIAGEN_MAX_ATTEMPTS", "0"),
    ("MEDIAGEN_MAX_OUTPUTS", "0"),
    ("MEDIAGEN_MAX_OUTPUT_BYTES", "0"),
    ("MEDIAGEN_GRPC_MAX_MESSAGE_BYTES", "0"),
    ("MEDIAGEN_WEBHOOK_MAX_BODY_BYTES", "-5"),
    ("MEDIAGEN_HTTP_MAX_CONNECTIONS", "0"),
    ("MEDIAGEN_HTTP_MAX_BODY_BYTES", "0"),
    ("MEDIAGEN_HTTP_HEADER_TIMEOUT_S", "0"),
    ("MEDIAGEN_HTTP_KEEPALIVE_S", "-1"),
    ("MEDIAGEN_POLL_INTERVAL_S", "0"),
    ("MEDIAGEN_POLL_INTERVAL_S", "nan"),
    ("MEDIAGEN_LEASE_S", "0"),
    ("MEDIAGEN_RECONCILE_INTERVAL_S", "-1"),
    ("MEDIAGEN_RETRY_BASE_S", "0"),
    ("MEDIAGEN_JOB_TIMEOUT_S", "0"),
    ("MEDIAGEN_PROVIDER_READ_TIMEOUT_S", "0"),
    ("MEDIAGEN_DOWNLOAD_TIMEOUT_S", "0"),
    ("MEDIAGEN_WEBHOOK_FALLBACK_POLL_S", "0"),
    ("MEDIAGEN_SHUTDOWN_GRACE_S", "-1"),
    ("MEDIAGEN_AUTH_CACHE_S", "-1"),
    ("MEDIAGEN_EMULATOR_LATENCY_S", "-0.5"),
    ("MEDIAGEN_GRPC_PORT", "70000"),
    ("MEDIAGEN_METRICS_PORT", "-1"),
]


@pytest.mark.parametrize(("name", "value"), REFUSED)
def test_a_setting_that_makes_no_sense_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_zero_where_zero_means_off_or_any_is_still_accepted() -> None:
    settings = Settings.from_env(
        {
            "MEDIAGEN_DB_MAX_OVERFLOW": "0",
            "MEDIAGEN_SHUTDOWN_GRACE_S": "0",
            "MEDIAGEN_AUTH_CACHE_S": "0",
            "MEDIAGEN_AMBIGUOUS_SETTLE_S": "0",
            "MEDIAGEN_DOWNLOAD_MIN_RATE_BPS": "0",
            "MEDIAGEN_EMULATOR_LATENCY_S": "0",
            "MEDIAGEN_METRICS_PORT": "0",
            "MEDIAGEN_WORKER_HEALTH_PORT": "0",
        }
    )
    assert (settings.db_max_overflow, settings.shutdown_grace_s, settings.metrics_port) == (0, 0, 0)
    # Unset names keep their defaults; a set one is taken as given.
    assert Settings.from_env({}).queue_name == "mediagen:jobs"
    assert Settings.from_env({"MEDIAGEN_QUEUE_NAME": "q"}).queue_name == "q"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MEDIAGEN_POLL_INTERVAL_S": "3", "MEDIAGEN_POLL_INTERVAL_MAX_S": "1"},
            "MEDIAGEN_POLL_INTERVAL_MAX_S must be at least MEDIAGEN_POLL_INTERVAL_S",
        ),
        (
            {"MEDIAGEN_RETRY_BASE_S": "90"},  # above the default maximum of 60
            "MEDIAGEN_RETRY_MAX_S must be at least MEDIAGEN_RETRY_BASE_S",
        ),
    ],
)
def test_a_backoff_whose_most_is_below_its_first_is_refused(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_a_worker_with_an_empty_queue_name_exits_at_start_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAGEN_")}
    done = subprocess.run(
        [sys.executable, "-m", "mediagen", "worker"],
        env={**env, "MEDIAGEN_QUEUE_NAME": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "MEDIAGEN_QUEUE_NAME must not be empty" in done.stderr
    assert "Traceback" not in done.stderr
