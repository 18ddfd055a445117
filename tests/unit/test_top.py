"""``mediagen top``'s pure parts: reading scrapes, combining endpoints, rates, the frame; and
``jobs list``'s ages."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mediagen.cli.ages import format_time, parse_age, resolve
from mediagen.cli.top.figures import SERIES, MetricsError, Scrape, combine, parse, rates
from mediagen.cli.top.view import Failure, Snapshot, render
from mediagen.metrics.definitions import exposed_names

API = """\
# TYPE mediagen_queue_depth gauge
mediagen_queue_depth 3.0
mediagen_queue_oldest_age_seconds 12.5
mediagen_jobs{state="pending"} 3.0
mediagen_jobs{state="running"} 2.0
mediagen_worker_jobs_in_flight 0.0
mediagen_worker_concurrency 0.0
mediagen_process_info{role="api",version="1"} 1.0
mediagen_jobs_finished_total{state="canceled",model="a/b"} 1.0
"""


def worker(succeeded: float, failed: float, in_flight: int = 2) -> str:
    return f"""\
mediagen_worker_jobs_in_flight {in_flight}
mediagen_worker_concurrency 4
mediagen_process_info{{role="worker",version="1"}} 1.0
mediagen_jobs_finished_total{{state="succeeded",model="a/b"}} {succeeded}
mediagen_jobs_finished_total{{state="succeeded",model="c/d"}} 1
mediagen_jobs_finished_total{{state="failed",model="a/b"}} {failed}
"""


def test_every_series_read_is_one_mediagen_exports() -> None:
    assert set(SERIES) <= exposed_names()


def test_endpoints_combine_as_the_readme_says_to_query_them() -> None:
    api2 = API.replace("mediagen_queue_depth 3.0", "mediagen_queue_depth 2.0")
    figures = combine(
        [
            parse("http://api-1/metrics", API),
            parse("http://api-2/metrics", api2),  # the same database gauges: max, not sum
            parse("http://w-1/metrics", worker(5, 1)),
            Scrape("http://w-2/metrics", error="connection refused"),
        ]
    )
    assert figures.queue_depth == 3 and figures.oldest_wait_s == 12.5
    assert dict(figures.active) == {"pending": 3, "running": 2}
    assert dict(figures.finished) == {"succeeded": 6, "failed": 1, "canceled": 2}
    assert [(w.url, w.role, w.in_flight, w.concurrency) for w in figures.workers] == [
        ("http://w-1/metrics", "worker", 2, 4)
    ]
    assert figures.unreachable == (("http://w-2/metrics", "connection refused"),)


def test_rates_ignore_endpoints_that_came_and_count_restarts_from_zero() -> None:
    before = combine([parse("w-1", worker(5, 1)), parse("w-2", worker(10, 0))])
    after = combine(
        [parse("w-1", worker(9, 1)), parse("w-2", worker(2, 0)), parse("w-3", worker(50, 50))]
    )
    # w-1: 4 more in 2 s; w-2 restarted and has done 3 since; w-3 is new: no rate yet.
    assert dict(rates(before, after, 2.0)) == {"succeeded": 3.5, "failed": 0.0, "canceled": 0.0}
    assert sum(rates(before, after, 0.0).values()) == 0


def test_text_that_is_not_metrics_is_an_error() -> None:
    with pytest.raises(MetricsError):
        parse("http://x/metrics", "<html>\n<body>hello</body>\n</html>")


def test_a_frame() -> None:
    figures = combine([parse("http://api/metrics", API), parse("http://w/metrics", worker(3, 1))])
    snapshot = Snapshot(
        taken_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        window_s=2.0,
        figures=figures,
        per_second={"succeeded": 1.5, "failed": 0.5, "canceled": 0.0},
        failures=(Failure("job-1", "a/b", None, "FAILED_PRECONDITION: CUDA\n out of  memory"),),
    )
    assert render(snapshot) == [
        "mediagen top  2026-12-01 10:00:00Z",
        "queue       3 waiting, oldest 12.5s",
        "jobs        pending 3  running 2",
        "finished    succeeded 4  failed 1  canceled 1  (since the scraped processes started)",
        "throughput  2.00 jobs/s (succeeded 1.50/s, failed 0.50/s, canceled 0.00/s) over 2.0s",
        "workers",
        "  IN FLIGHT  ROLE    ENDPOINT",
        "  2/4        worker  http://w/metrics",
        "recent failures",
        "  JOB    MODEL  FINISHED  ERROR",
        "  job-1  a/b    -         FAILED_PRECONDITION: CUDA out of memory",
    ]
    bare = Snapshot(snapshot.taken_at, 2.0, combine([]), snapshot.per_second, (), "unavailable")
    assert render(bare)[1].startswith("queue       - (no endpoint computes")
    assert render(bare)[-2:] == [
        "workers     none found (add each worker's --metrics URL)",
        "recent failures: not listed (unavailable)",
    ]


NOW = datetime(2026, 12, 1, 12, 30, 45, 999_999, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "meant"),
    [
        ("30s", datetime(2026, 12, 1, 12, 30, 15, tzinfo=UTC)),
        ("10m", datetime(2026, 12, 1, 12, 20, 45, tzinfo=UTC)),
        ("2h", datetime(2026, 12, 1, 10, 30, 45, tzinfo=UTC)),
        ("3d", datetime(2026, 11, 28, 12, 30, 45, tzinfo=UTC)),
        ("2026-12-01T10:00:00Z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01T11:00:00.5+01:00", datetime(2026, 12, 1, 10, 0, 0, 500_000, tzinfo=UTC)),
        ("999999999d", datetime.min.replace(tzinfo=UTC)),  # before year 1: since ever
    ],
)
def test_ages_become_times_to_the_second(text: str, meant: datetime) -> None:
    moment = resolve(parse_age(text), NOW)
    assert moment == meant
    assert resolve(parse_age(format_time(moment)), NOW) == moment  # what the hint prints


@pytest.mark.parametrize("text", ["", "10", "5x", "1.5h", "-3d", "yesterday", "2026-12-01T10:00"])
def test_bad_ages_are_usage_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_age(text)


def test_no_age_is_no_bound_and_times_print_in_utc() -> None:
    assert resolve(None, NOW) is None
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 1, 2, 5, 4, 5, tzinfo=plus_two)) == "2026-01-02T03:04:05Z"
