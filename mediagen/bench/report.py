"""What a bench run found, as text or JSON. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mediagen.bench.procfs import ProcessFigures
from mediagen.bench.stats import Latency


@dataclass(frozen=True)
class Check:
    """One target of issue 10 and whether this run met it."""

    target: str  # e.g. "accepted/s >= 1000"
    measured: float
    ok: bool

    def to_json(self) -> dict[str, object]:
        return {"target": self.target, "measured": round(self.measured, 4), "ok": self.ok}


def at_least(target: str, measured: float, bound: float) -> Check:
    return Check(target, measured, measured >= bound)


def below(target: str, measured: float, bound: float) -> Check:
    return Check(target, measured, measured < bound)


@dataclass(frozen=True)
class BenchReport:
    scenario: str
    deployment: str  # embedded | distributed | target
    settings: Mapping[str, object]
    figures: Mapping[str, float | int]  # counts, rates and durations, named with their unit
    latencies: Mapping[str, Latency] = field(default_factory=dict)
    processes: Sequence[ProcessFigures] = ()
    checks: Sequence[Check] = ()
    notes: Sequence[str] = ()

    @property
    def met_targets(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "deployment": self.deployment,
            "settings": dict(self.settings),
            "figures": {
                k: round(v, 4) if isinstance(v, float) else v for k, v in self.figures.items()
            },
            "latencies": {name: lat.to_json() for name, lat in self.latencies.items()},
            "processes": [proc.to_json() for proc in self.processes],
            "checks": [check.to_json() for check in self.checks],
            "met_targets": self.met_targets,
            "notes": list(self.notes),
        }


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _number(value: float | int) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"


def format_text(report: BenchReport) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in report.settings.items())
    lines = [f"bench {report.scenario} ({report.deployment}): {settings}", ""]
    lines += _table([("figure", "value"), *((k, _number(v)) for k, v in report.figures.items())])
    if report.latencies:
        lines += ["", *_table(_latency_rows(report.latencies))]
    if report.processes:
        lines += ["", *_table(_process_rows(report.processes))]
    if report.checks:
        lines += [""] + [
            f"{'PASS' if c.ok else 'FAIL'}  {c.target} (measured {_number(c.measured)})"
            for c in report.checks
        ]
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)


def _latency_rows(latencies: Mapping[str, Latency]) -> list[list[str]]:
    rows = [["latency", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"]]
    for name, lat in latencies.items():
        values = (lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.max_ms)
        rows.append([name, f"{lat.count:,}", *(f"{v:.2f}" for v in values)])
    return rows


def _process_rows(processes: Sequence[ProcessFigures]) -> list[list[str]]:
    rows = [["process", "pid", "cpu s", "cores", "rss MiB", "peak MiB", "growth MiB"]]
    for p in processes:
        memory = (p.rss_end_mib, p.rss_peak_mib)
        rows.append(
            [p.name, str(p.pid), f"{p.cpu_s:.2f}", f"{p.cores:.3f}"]
            + [f"{m:.0f}" for m in memory]
            + [f"{p.rss_growth_mib:.1f}"]
        )
    return rows
