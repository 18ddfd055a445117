"""Token-bucket arithmetic, as a table: (bucket, level before, now, cost) -> decision."""

from __future__ import annotations

import pytest

from mediagen.limits.bucket import Bucket, Decision, Level, take

B = Bucket(rate_per_s=2.0, burst=5)

CASES: list[tuple[str, Bucket, Level | None, float, int, Decision]] = [
    ("first call: a full bucket", B, None, 100.0, 1, Decision(True, Level(4.0, 100.0), 0.0)),
    ("takes the last token", B, Level(1.0, 100.0), 100.0, 1, Decision(True, Level(0.0, 100.0), 0)),
    ("empty: wait 1/rate", B, Level(0.0, 100.0), 100.0, 1, Decision(False, Level(0, 100.0), 0.5)),
    (
        "half a token: wait the rest",
        B,
        Level(0.5, 100.0),
        100.0,
        1,
        Decision(False, Level(0.5, 100.0), 0.25),
    ),
    ("refills at the rate", B, Level(0.0, 100.0), 100.5, 1, Decision(True, Level(0.0, 100.5), 0.0)),
    ("refill partial", B, Level(0.0, 100.0), 100.25, 1, Decision(False, Level(0.5, 100.25), 0.25)),
    ("never above burst", B, Level(0.0, 100.0), 1000.0, 1, Decision(True, Level(4.0, 1000.0), 0.0)),
    (
        "clock went back: no refill",
        B,
        Level(0.0, 100.0),
        90.0,
        1,
        Decision(False, Level(0.0, 90.0), 0.5),
    ),
    ("cost 3 of 2 left", B, Level(2.0, 100.0), 100.0, 3, Decision(False, Level(2.0, 100.0), 0.5)),
    ("slow rate", Bucket(0.1, 1), Level(0.0, 0.0), 4.0, 1, Decision(False, Level(0.4, 4.0), 6.0)),
]


@pytest.mark.parametrize(
    ("bucket", "level", "now_s", "cost", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_take(
    bucket: Bucket, level: Level | None, now_s: float, cost: int, expected: Decision
) -> None:
    got = take(bucket, level, now_s, cost)
    assert got.allowed is expected.allowed
    assert got.level.tokens == pytest.approx(expected.level.tokens)
    assert got.level.at_s == expected.level.at_s
    assert got.retry_after_s == pytest.approx(expected.retry_after_s)


def test_a_burst_then_the_rate() -> None:
    """burst calls at once, then one per 1/rate seconds, as a caller sees it."""
    level = None
    allowed = []
    for i in range(12):  # every 0.25 s for 3 s, rate 2/s, burst 5
        decision = take(B, level, 100.0 + i * 0.25)
        level = decision.level
        allowed.append(decision.allowed)
    # Each step refills half a token and spends one: the burst of 5 lasts 9 calls (it refills
    # while it drains), then one call in two gets through (2/s of 4/s asked).
    assert allowed == [True] * 9 + [False, True, False]


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_a_bucket_that_cannot_work_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        Bucket(rate, burst)
