"""The health rule (components from probe results) and the component report's wire form."""

from __future__ import annotations

import pytest

from mediagen.health import report
from mediagen.health.status import Component, ProbeResult, fold, observe, ready

OK = ProbeResult("database", ok=True, latency_s=0.002)
FAILED = ProbeResult("database", ok=False, latency_s=1.0, error="no answer within 1s")


@pytest.mark.parametrize(
    ("previous", "result", "up", "failures"),
    [
        (None, OK, True, 0),
        (None, FAILED, False, 1),  # never probed: the first failure counts at once
        (Component("database", up=True, latency_s=0.0), FAILED, True, 1),  # one slow probe
        (Component("database", up=True, latency_s=0.0, failures=1), FAILED, False, 2),
        (Component("database", up=False, latency_s=0.0, failures=5), FAILED, False, 6),
        (Component("database", up=False, latency_s=0.0, failures=5), OK, True, 0),
    ],
)
def test_observe(previous: Component | None, result: ProbeResult, up: bool, failures: int) -> None:
    after = observe(previous, result, down_after=2)
    assert (after.up, after.failures, after.latency_s) == (up, failures, result.latency_s)
    assert after.error == result.error


def test_down_after_one_failure_when_asked() -> None:
    assert not observe(Component("redis", up=True, latency_s=0.0), FAILED, down_after=1).up


def test_fold_is_a_new_mapping_and_ready_needs_every_component() -> None:
    before = {"database": Component("database", up=True, latency_s=0.0, failures=1)}
    after = fold(before, [FAILED, ProbeResult("redis", ok=True, latency_s=0.001)])
    assert before["database"].failures == 1
    assert {name: c.up for name, c in after.items()} == {"database": False, "redis": True}
    assert not ready(after.values())
    assert ready(fold(after, [OK]).values())
    assert ready([])


def test_report_round_trip() -> None:
    components = [
        Component("database", up=False, latency_s=0.5, error="ConnectionRefusedError: é"),
        Component("storage", up=True, latency_s=0.00123),
    ]
    text = report.encode(components)
    assert text.isascii()
    assert report.decode(text) == [
        {
            "name": "database",
            "status": "NOT_SERVING",
            "latency_ms": 500.0,
            "error": "ConnectionRefusedError: é",
        },
        {"name": "storage", "status": "SERVING", "latency_ms": 1.23},
    ]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "{}",
        '[{"name": "x"}]',
        '[{"name": 1, "status": "SERVING", "latency_ms": 1}]',
    ],
)
def test_report_decode_drops_what_it_cannot_read(text: str) -> None:
    assert report.decode(text) == []
