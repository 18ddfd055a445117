"""Every ``mediagen bench`` scenario at a tiny size, run as the command a user types, against
a real ``mediagen serve`` process (SQLite, the in-process queue, its bundled emulator): copy
starts its own deployment (and e2e, at the end, a private distributed one); the others are
pointed at one started here with ``--target``, ``--pid`` and ``--emulator-url``. Each report
must count what was asked and measure the processes it was given.

The shared one runs one job at a time, as the watch scenario's own deployment does (its idle
phase holds the watched jobs behind a blocker), with quick polls so that costs little."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from mediagen.bench import e2e
from mediagen.bench.deploy import DeployOptions, deployed
from mediagen.bench.options import BenchOptions
from tests.fixtures.processes import Cluster, Proc, wait_for_grpc_health
from tests.fixtures.s3 import free_port


@dataclass(frozen=True)
class Serve:
    proc: Proc
    target: str
    emulator_url: str

    def args(self) -> list[str]:
        return [
            "--target", self.target, "--pid", f"serve={self.proc.popen.pid}",
            "--emulator-url", self.emulator_url,
        ]  # fmt: skip


def _base_env() -> dict[str, str]:
    from mediagen.chaos.cluster import base_env

    return base_env() | {"MEDIAGEN_LOG_LEVEL": "WARNING"}


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    root = tmp_path_factory.mktemp("bench-serve")
    cluster = Cluster(env=_base_env(), logs=root)
    grpc_port, emulator_port = free_port(), free_port()
    proc = cluster.start(
        "serve",
        "serve",
        env={
            "MEDIAGEN_HOST": "127.0.0.1",
            "MEDIAGEN_GRPC_PORT": str(grpc_port),
            "MEDIAGEN_HTTP_PORT": str(free_port()),
            "MEDIAGEN_EMULATOR_PORT": str(emulator_port),
            "MEDIAGEN_DATA_DIR": str(root / "data"),
            # Quick polls: the tiny jobs finish within a second.
            "MEDIAGEN_POLL_INTERVAL_S": "0.05",
            "MEDIAGEN_POLL_INTERVAL_MAX_S": "0.1",
            "MEDIAGEN_SHUTDOWN_GRACE_S": "1",
            "MEDIAGEN_WORKER_CONCURRENCY": "1",
        },
    )
    try:
        wait_for_grpc_health(f"127.0.0.1:{grpc_port}", proc)
        yield Serve(proc, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{emulator_port}")
    finally:
        cluster.stop_all()


def bench(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "mediagen", "bench", *args, "--seconds", "30", "--json"],
        capture_output=True,
        text=True,
        timeout=90,
        env=_base_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def assert_sane(
    report: dict[str, Any], busy: AbstractSet[str], present: AbstractSet[str] = frozenset({"bench"})
) -> None:
    """Latencies ordered; the ``busy`` processes measured with CPU spent, the ``present`` ones
    (this client, an idle phase: maybe less than a clock tick) measured at all."""
    for lat in report["latencies"].values():
        assert lat["count"] > 0
        assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    measured = {proc["name"]: proc for proc in report["processes"]}
    assert busy | present <= set(measured), measured
    for name in busy | present:
        assert measured[name]["cpu_s"] >= 0 and measured[name]["rss_peak_mib"] > 10
    assert all(measured[name]["cpu_s"] > 0 for name in busy), measured
    assert report["checks"] and all(isinstance(c["ok"], bool) for c in report["checks"])


# Order matters: submit comes last, as its jobs are still running when it returns.


def test_e2e_counts_every_job_to_its_completion(serve: Serve) -> None:
    report = bench("e2e", "--jobs", "12", "--concurrency", "4", *serve.args())
    figures = report["figures"]
    assert (figures["submitted"], figures["succeeded"], figures["unfinished"]) == (12, 12, 0)
    assert figures["completed_per_s"] > 0 and figures["makespan_seconds"] > 0
    assert report["latencies"]["create -> complete"]["count"] == 12
    assert_sane(report, {"serve"})


def test_inflight_counts_one_create_per_job_at_the_emulator(serve: Serve) -> None:
    report = bench("inflight", "--jobs", "10", "--job-seconds", "0.1", *serve.args())
    figures = report["figures"]
    assert (figures["submitted"], figures["succeeded"], figures["failed"]) == (10, 10, 0)
    assert figures["provider_creates"] == 10 == figures["max_creates_per_min"]
    assert figures["provider_other_requests"] >= 10  # at least one poll each
    assert_sane(report, {"serve"})
    assert {c["target"] for c in report["checks"]} >= {"serve cores < 0.5", "creates/min <= 600"}


def test_copy_on_a_deployment_of_its_own() -> None:
    report = bench("copy", "--size-mib", "3", "--deploy", "embedded")
    assert report["deployment"] == "embedded"
    assert report["figures"]["succeeded"] == 1
    assert report["figures"]["stored_bytes"] == 3 * 1024 * 1024
    assert_sane(report, {"serve"})
    growth = next(c for c in report["checks"] if "RSS growth" in c["target"])
    worker = next(p for p in report["processes"] if p["name"] == "serve")
    assert growth["measured"] == pytest.approx(worker["rss_growth_mib"], abs=0.1)


def test_watch_times_events_after_an_idle_phase(serve: Serve) -> None:
    report = bench("watch", "--jobs", "2", "--streams", "6", "--idle-s", "0.5", *serve.args())
    figures = report["figures"]
    assert (figures["opened"], figures["ended"], figures["errors"]) == (6, 6, 0)
    # Each stream sees at least its job start and succeed, both after the release.
    assert figures["live_events"] >= 12
    assert report["latencies"]["open -> first event"]["count"] == 6
    assert_sane(report, {"serve (live)"}, {"serve (no streams)", "serve (idle)", "bench (live)"})


def test_submit_closed_and_open_loop(serve: Serve) -> None:
    closed = bench(
        "submit", "--jobs", "15", "--concurrency", "3", "--job-seconds", "1", *serve.args()
    )
    assert closed["figures"]["calls"] == closed["figures"]["accepted"] == 15
    assert closed["figures"]["accepted_per_s"] > 0
    assert closed["latencies"]["GenerateMedia"]["count"] == 15
    assert_sane(closed, {"serve"})

    opened = bench("submit", "--jobs", "10", "--rate", "40", "--job-seconds", "1", *serve.args())
    assert opened["figures"]["accepted"] == 10 and opened["settings"]["rate"] == 40
    assert opened["figures"]["seconds"] >= 9 / 40  # the tenth call is due after 9/40 s
    assert any(c["target"].startswith("p99 < 25 ms") for c in opened["checks"])


def test_e2e_on_a_private_distributed_deployment_without_webhooks() -> None:
    args = ["--deploy", "distributed", "--webhooks", "off", "--jobs", "5", "--concurrency", "2"]
    report = bench("e2e", *args)
    assert report["deployment"] == "distributed"
    assert (report["figures"]["submitted"], report["figures"]["succeeded"]) == (5, 5)
    # Every process of the deployment measured, PostgreSQL with its backends; no gateway.
    assert_sane(report, {"api", "worker0"}, {"emulator", "redis", "postgres", "bench"})
    assert "gateway" not in {proc["name"] for proc in report["processes"]}


@pytest.mark.parametrize("kind", ["embedded", "distributed"])
async def test_e2e_starts_its_deployment_with_the_provider_budget_lifted(kind: str) -> None:
    # Replicate's real budget would cap e2e at 10 creates/s: the emulator must enforce none.
    options = DeployOptions(kind=kind, env=e2e.deploy_env(BenchOptions()))
    async with (
        deployed(options) as deployment,
        httpx.AsyncClient() as client,
    ):
        assert deployment.emulator_url is not None
        answer = await client.get(f"{deployment.emulator_url}/_emulator/limits")
    limits = answer.raise_for_status().json()
    assert limits["creates_per_min"] >= 1_000_000 and limits["requests_per_min"] >= 1_000_000


def test_inflight_on_a_private_distributed_deployment_is_completed_by_webhooks() -> None:
    """By default a gateway receives the emulator's webhooks and polling is the 30 s fallback,
    so jobs done within seconds were woken by them (``--webhooks off``: see the e2e test)."""
    report = bench("inflight", "--deploy", "distributed", "--jobs", "4", "--job-seconds", "1")
    figures = report["figures"]
    assert (figures["submitted"], figures["succeeded"], figures["unfinished"]) == (4, 4, 0)
    assert report["settings"]["webhooks"] is True
    assert figures["webhooks_delivered"] == 4
    assert figures["run_seconds"] < 20  # well before the first fallback poll
    lag = report["latencies"]["prediction end -> job complete"]
    assert lag["count"] == 4 and lag["max_ms"] < 10_000
    # One read per job after its webhook, and the gateway's one fetch of the signing secret.
    assert figures["provider_other_requests"] <= 4 + 1
    assert_sane(report, {"gateway", "worker0"}, {"emulator", "api"})
