"""The reduced chaos run: every scenario on a small batch (10 jobs each by default, about 100
in all), against real processes on loopback, private PostgreSQL and Redis.

Selected with ``-m chaos`` (it takes a few minutes); ``CHAOS_JOBS_PER_SCENARIO``,
``CHAOS_WORKERS`` and ``CHAOS_STORAGE`` (local|s3) size it. The run happens once for the module;
each scenario's invariants are then one test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator

import pytest

from mediagen.chaos import ChaosOptions, ChaosReport, ClusterOptions, format_table, run_chaos
from mediagen.chaos.plan import SCENARIO_NAMES

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(
        not (shutil.which("initdb") and shutil.which("pg_ctl") and shutil.which("redis-server")),
        reason="needs initdb/pg_ctl and redis-server",
    ),
]

#: Scenarios known to break because of a bug outside the chaos package (name -> the reason);
#: empty now that workers and event subscriptions ride out Redis outages.
KNOWN_BROKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def report() -> Iterator[ChaosReport]:
    options = ChaosOptions(
        jobs_per_scenario=int(os.environ.get("CHAOS_JOBS_PER_SCENARIO", "10")),
        cluster=ClusterOptions(
            workers=int(os.environ.get("CHAOS_WORKERS", "2")),
            storage=os.environ.get("CHAOS_STORAGE", "local"),
        ),
    )
    lines: list[str] = []
    result = asyncio.run(run_chaos(options, lines.append))
    print("\n".join(lines), format_table(result), sep="\n")
    yield result


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(name, marks=pytest.mark.xfail(reason=KNOWN_BROKEN[name], strict=False))
        if name in KNOWN_BROKEN
        else name
        for name in SCENARIO_NAMES
    ],
)
def test_scenario_keeps_every_invariant(report: ChaosReport, scenario: str) -> None:
    row = report.row(scenario)
    assert row.jobs == report.settings["jobs_per_scenario"]
    assert row.succeeded + row.failed == row.jobs  # every job final
    assert row.predictions >= row.succeeded  # the emulator saw them: the count is real
    assert row.streams >= row.jobs
    assert row.violations == (), format_table(ChaosReport((row,)))
