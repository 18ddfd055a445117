"""The pure parts of ``mediagen bench``: percentiles, windows, /proc parsing, the report, and
the command line's refusals (which must happen before anything is started or reached)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from mediagen.bench.lag import lags_s, prediction_ends
from mediagen.bench.procfs import (
    ProcessFigures,
    cpu_seconds,
    read_usage,
    status_kib,
    tree_cpu_seconds,
)
from mediagen.bench.provider import split_counts, webhook_counts
from mediagen.bench.report import BenchReport, at_least, below, format_text
from mediagen.bench.stats import latency, max_in_window, percentile
from mediagen.cli import EXIT_USAGE, main
from mediagen.v1 import job_pb2


def test_nearest_rank_percentiles() -> None:
    ordered = [float(i) for i in range(1, 101)]  # 1..100
    assert [percentile(ordered, q) for q in (0.5, 0.9, 0.99, 1.0)] == [50.0, 90.0, 99.0, 100.0]
    assert percentile([], 0.5) == 0.0
    summary = latency([0.003, 0.001, 0.002])
    assert (summary.count, summary.p50_ms, summary.max_ms) == (3, 2.0, 3.0)


def test_max_in_window_is_the_busiest_minute() -> None:
    # A counter sampled every 10 s: 100 in the first minute, then 300 within 60 s.
    samples = [(0.0, 0), (30.0, 50), (60.0, 100), (70.0, 100), (100.0, 250), (130.0, 400)]
    assert max_in_window(samples, 60.0) == 300
    assert max_in_window(samples[:1], 60.0) == 0


def test_cpu_seconds_survive_a_command_name_with_spaces_and_parentheses() -> None:
    fields = " ".join(["S", *["0"] * 10, "250", "50", *["0"] * 30])
    assert cpu_seconds(f"42 (a (weird) name) {fields}", ticks_per_s=100) == 3.0
    assert status_kib("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n", "VmRSS") == 1024


def test_this_process_reads_as_using_cpu_and_memory() -> None:
    usage = read_usage(os.getpid())
    assert usage is not None and usage.cpu_s > 0 and usage.rss_kib > 0
    assert usage.hwm_kib >= usage.rss_kib
    assert read_usage(2**22 + 1) is None  # above pid_max's default: no such process


def test_provider_counts_split_creates_from_other_api_requests() -> None:
    stats = {"requests": {"create": 3, "get": 10, "cancel": 1, "list": 2, "file": 7, "secret": 1}}
    assert split_counts(stats) == (3, 14)  # file downloads are not Replicate API calls
    assert split_counts({}) == (0, 0)
    assert webhook_counts({"webhooks": {"delivered": 7, "failed": 2, "given_up": 1}}) == (7, 2)
    assert webhook_counts({}) == (0, 0)


def test_lag_is_from_the_latest_prediction_end_to_the_job_completion() -> None:
    def item(job: str, attempt: int, completed: str | None) -> dict[str, object]:
        url = f"http://127.0.0.1:1/webhooks/replicate?job={job}&attempt={attempt}"
        return {"webhook": url, "completed_at": completed}

    items: list[dict[str, object]] = [  # newest first, as the list endpoint answers
        item("a", 2, "2026-01-01T00:00:10+00:00"),
        item("a", 1, "2026-01-01T00:00:01+00:00"),  # an earlier attempt's: not the one noticed
        item("b", 1, None),  # still running
        {"webhook": None, "completed_at": "2026-01-01T00:00:05+00:00"},  # not ours
    ]
    ends = prediction_ends(items)
    assert set(ends) == {"a"}
    job = job_pb2.Job(id="a", status=job_pb2.JOB_STATE_SUCCEEDED)
    job.complete_time.FromSeconds(int(ends["a"]) + 3)
    failed = job_pb2.Job(id="a", status=job_pb2.JOB_STATE_FAILED)
    assert lags_s([job, failed, job_pb2.Job(id="b")], ends) == [3.0]


def test_report_as_text_and_json() -> None:
    proc = ProcessFigures("api", 7, 1.5, 0.25, 100.0, 110.0, 120.0)
    report = BenchReport(
        scenario="submit",
        deployment="distributed",
        settings={"jobs": 10},
        figures={"accepted": 10, "accepted_per_s": 1234.5},
        latencies={"GenerateMedia": latency([0.001, 0.002])},
        processes=[proc],
        checks=[at_least("accepted/s >= 1000", 1234.5, 1000), below("p99 < 1 ms", 2.0, 1.0)],
    )
    text = format_text(report)
    assert "accepted_per_s  1,234.5" in text
    assert "PASS  accepted/s >= 1000" in text and "FAIL  p99 < 1 ms" in text
    rows = [line.split() for line in text.splitlines()]
    assert ["api", "7", "1.50", "0.250", "110", "120", "20.0"] in rows
    data = json.loads(json.dumps(report.to_json()))
    assert data["met_targets"] is False
    assert data["processes"][0]["rss_growth_mib"] == 20.0
    assert data["latencies"]["GenerateMedia"]["p99_ms"] == 2.0


def test_the_command_line_lists_every_scenario() -> None:
    from mediagen.bench.options import SCENARIO_NAMES
    from mediagen.bench.runner import SCENARIOS

    assert tuple(SCENARIOS) == SCENARIO_NAMES


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "submit", "--target", "10.1.2.3:50051"], "not on loopback"),
        (["bench", "submit", "--target", "example.com:50051"], "not on loopback"),
        (
            ["bench", "inflight", "--target", "127.0.0.1:1", "--emulator-url", "http://10.0.0.9"],
            "must be on loopback",
        ),
        (["bench", "submit", "--pid", "12"], "go with --target"),
        (["bench", "submit", "--target", "127.0.0.1:1", "--pid", "x"], "[NAME=]PID"),
        (["bench", "e2e", "--jobs", "0"], "jobs must be 1"),
    ],
)
def test_refused_before_anything_starts(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_a_tree_counts_the_cpu_of_children_alive_and_reaped() -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    before = tree_cpu_seconds(os.getpid())
    alive = subprocess.Popen(
        [sys.executable, "-c", burn + "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        subprocess.run([sys.executable, "-c", burn], check=True)  # reaped at once
        deadline = time.monotonic() + 10
        while (usage := read_usage(alive.pid)) is not None and usage.cpu_s < 0.3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert tree_cpu_seconds(os.getpid()) - before >= 0.6
    finally:
        alive.communicate(b"", timeout=10)
