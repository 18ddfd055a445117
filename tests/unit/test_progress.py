"""Progress from tqdm bars in prediction logs (mediagen.jobs.progress)."""

from __future__ import annotations

import pytest

from mediagen.jobs.progress import MAX_UNTIL_DONE, Bar, ProgressTracker, last_bar

# Real shapes: Cog joins tqdm redraws with \r; older logs put \r\n between them; ASCII bars.
CR_JOINED = (
    "Using seed: 1\n  0%|          | 0/50 [00:00<?, ?it/s]\r 40%|████      | 20/50 "
    "[00:01<00:01, 20.0it/s]\r100%|██████████| 50/50 [00:02<00:00, 20.0it/s]"
)


@pytest.mark.parametrize(
    ("logs", "bar"),
    [
        (None, None),
        ("", None),
        ("Using seed: 42\nGenerating...\nGenerated image in 5.0sec\n", None),
        (" 40%|████      | 20/50 [00:01<00:01, 20.0it/s]", Bar(20, 50)),
        # The 1.0.7 client reads the first segment of this line (0/50); the last one is right.
        (CR_JOINED, Bar(50, 50)),
        (CR_JOINED + "\n", Bar(50, 50)),
        (
            "  2%|▏         | 1/50 [00:00<00:05]\r\n\r\n  4%|▍         | 2/50 [00:00<00:05]",
            Bar(2, 50),
        ),
        ("  1%|1         | 3/299 [00:00<01:08,  4.34it/s]", Bar(3, 299)),
        ("Sampling:  10%|█         | 1/10 [00:03<00:27,  3.01s/it]", Bar(1, 10)),
        (" 40%|████      | 20/50 [00:01<00:01]\nsaving image\n", Bar(20, 50)),
        ("  0%|          | 0/0 [00:00<?, ?it/s]", None),  # an empty bar says nothing
    ],
)
def test_last_bar(logs: str | None, bar: Bar | None) -> None:
    assert last_bar(logs) == bar


def _bar(n: int, total: int) -> str:
    return f"{n * 100 // total:3d}%|#         | {n}/{total} [00:00<00:00, 1.00it/s]"


def _run(*observations: tuple[str | None, bool]) -> list[float]:
    tracker = ProgressTracker()
    values = []
    for logs, succeeded in observations:
        tracker = tracker.observe(logs, succeeded=succeeded)
        values.append(round(tracker.value, 4))
    return values


@pytest.mark.parametrize(
    ("observations", "values"),
    [
        # One bar: n/total, capped below 1 until succeeded.
        (
            [(_bar(10, 50), False), (_bar(25, 50), False), (_bar(50, 50), False), (None, True)],
            [0.198, 0.495, MAX_UNTIL_DONE, 1.0],
        ),
        # Logs without a bar, or no logs yet: stay where we are.
        ([("", False), (_bar(25, 50), False), ("", False)], [0.0, 0.495, 0.495]),
        # A new phase (total changed) fills what is left instead of going back to 20 %.
        (
            [(_bar(25, 50), False), (_bar(2, 10), False), (_bar(10, 10), False)],
            [0.495, 0.5940, MAX_UNTIL_DONE],
        ),
        # A restarted bar with the same total (one bar per image) is a new phase too.
        ([(_bar(40, 50), False), (_bar(5, 50), False)], [0.792, 0.8118]),
        # Within a phase it never goes back.
        ([(_bar(30, 50), False), (_bar(30, 50), False)], [0.594, 0.594]),
    ],
)
def test_tracker_is_monotonic_and_capped(
    observations: list[tuple[str | None, bool]], values: list[float]
) -> None:
    assert _run(*observations) == values
