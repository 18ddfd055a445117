"""The per-tenant limit checks the servicer makes, without I/O: streams, active jobs, rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.rpc import error_details_pb2

from mediagen.config import ConfigError, Settings
from mediagen.limits.bucket import Bucket
from mediagen.limits.errors import RateLimited, TooManyActiveJobs, TooManyWatchStreams
from mediagen.limits.quota import ActiveJobs, Quotas, active_retry_s
from mediagen.limits.rate import LocalRateLimiter
from mediagen.limits.streams import StreamSlots

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_stream_slots_per_tenant_are_released_when_a_stream_ends() -> None:
    slots = StreamSlots(2)
    with slots.hold("a"), slots.hold("a"):
        with pytest.raises(TooManyWatchStreams) as caught, slots.hold("a"):
            pass
        with slots.hold("b"):  # another tenant is not affected
            assert (slots.open("a"), slots.open("b")) == (2, 1)
    assert slots.open("a") == 0
    with slots.hold("a"):
        pass
    assert caught.value.grpc_code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.retry_after_s > 0


def test_a_stream_that_fails_gives_its_slot_back() -> None:
    slots = StreamSlots(1)
    with pytest.raises(RuntimeError), slots.hold("a"):
        raise RuntimeError("stream broke")
    assert slots.open("a") == 0


def test_zero_means_no_stream_limit() -> None:
    slots = StreamSlots(0)
    with slots.hold("a"), slots.hold("a"), slots.hold("a"):
        assert slots.open("a") == 3


@pytest.mark.parametrize(
    ("next_done_at", "expected_s"),
    [
        (None, 5.0),  # nothing estimated
        (NOW + timedelta(seconds=12), 12.0),  # the first job's estimated end
        (NOW - timedelta(seconds=30), 1.0),  # overdue: soon, but not at once
        (NOW + timedelta(hours=2), 60.0),  # far off: ask again within a minute
    ],
)
def test_active_job_retry_delay(next_done_at: datetime | None, expected_s: float) -> None:
    assert active_retry_s(next_done_at, NOW) == expected_s


class Clock:
    def __init__(self) -> None:
        self.now_s = 50.0

    def __call__(self) -> float:
        return self.now_s


async def test_quotas_check_the_rate_then_the_active_jobs() -> None:
    clock = Clock()
    counted: list[str] = []
    active = {"a": ActiveJobs(0, None)}

    async def active_jobs(tenant: str) -> ActiveJobs:
        counted.append(tenant)
        return active[tenant]

    quotas = Quotas(
        rate=LocalRateLimiter(Bucket(1.0, 2), clock=clock), max_active_jobs=3, clock=lambda: NOW
    )
    await quotas.admit_submission("a", active_jobs)
    await quotas.admit_submission("a", active_jobs)
    with pytest.raises(RateLimited) as rate:
        await quotas.admit_submission("a", active_jobs)
    assert rate.value.retry_after_s == pytest.approx(1.0)
    assert counted == ["a", "a"]  # refused by the rate: the database is not asked

    clock.now_s += 10
    active["a"] = ActiveJobs(3, NOW + timedelta(seconds=7))
    with pytest.raises(TooManyActiveJobs) as full:
        await quotas.admit_submission("a", active_jobs)
    assert full.value.retry_after_s == 7.0


def test_quota_errors_carry_retry_info_and_quota_failure() -> None:
    status = TooManyActiveJobs("acme", 3, retry_after_s=2.5).to_status()
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    info, retry, quota = (
        error_details_pb2.ErrorInfo(),
        error_details_pb2.RetryInfo(),
        error_details_pb2.QuotaFailure(),
    )
    unpacked = [d.Unpack(m) for d, m in zip(status.details, (info, retry, quota), strict=True)]
    assert unpacked == [True, True, True]
    assert info.reason == "TOO_MANY_ACTIVE_JOBS"
    assert dict(info.metadata) == {"tenant": "acme", "limit": "3"}
    assert retry.retry_delay.ToMilliseconds() == 2500
    assert quota.violations[0].subject == "tenant:acme"
    assert "active" in quota.violations[0].description


@pytest.mark.parametrize(
    "env",
    [
        {"MEDIAGEN_RATE_LIMIT_PER_S": "-1"},
        {"MEDIAGEN_RATE_LIMIT_PER_S": "2", "MEDIAGEN_RATE_LIMIT_BURST": "0"},
        {"MEDIAGEN_MAX_ACTIVE_JOBS": "-1"},
        {"MEDIAGEN_MAX_WATCH_STREAMS": "-3"},
    ],
)
def test_limits_that_cannot_work_are_refused_at_start(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="MEDIAGEN_"):
        Settings.from_env(env)


def test_limit_settings_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "MEDIAGEN_RATE_LIMIT_PER_S": "0.5",
            "MEDIAGEN_RATE_LIMIT_BURST": "4",
            "MEDIAGEN_MAX_ACTIVE_JOBS": "7",
            "MEDIAGEN_MAX_WATCH_STREAMS": "3",
        }
    )
    assert (settings.rate_limit_per_s, settings.rate_limit_burst) == (0.5, 4)
    assert (settings.max_active_jobs, settings.max_watch_streams) == (7, 3)
    assert Settings.from_env({}).rate_limit_per_s == 0  # off unless configured


async def test_wiring_picks_the_rate_limiter_by_mode() -> None:
    from mediagen.limits.redis_rate import RedisRateLimiter
    from mediagen.wiring import build_rate_limiter

    assert build_rate_limiter(Settings()) is None
    local = build_rate_limiter(Settings(rate_limit_per_s=2.0, rate_limit_burst=3))
    assert isinstance(local, LocalRateLimiter) and local.bucket == Bucket(2.0, 3)
    shared = build_rate_limiter(
        Settings(rate_limit_per_s=2.0, redis_url="redis://127.0.0.1:6379/0", rate_limit_prefix="p:")
    )
    assert isinstance(shared, RedisRateLimiter) and shared.key("acme") == "p:acme"
    await shared.close()  # never connected: building one opens nothing
