"""Prediction logs as Cog writes them: a few lines, then tqdm redraws joined by ``\\r``. Pure.

Cog flushes captured output on ``\\n`` *and* ``\\r``, so a tqdm bar lands in ``logs`` as
``\\r``-separated segments on one line, closed by ``\\n`` when the bar finishes
(reference/replicate.md §2).
"""

from __future__ import annotations

import math

_BAR_WIDTH = 10  # tqdm's bar when it cannot see a terminal, as in Replicate logs
_BLOCKS = " ▏▎▍▌▋▊▉█"  # tqdm's unicode charset: space, eighths, full block


def _bar(fraction: float) -> str:
    eighths = len(_BLOCKS) - 1
    full, part = divmod(int(fraction * _BAR_WIDTH * eighths), eighths)
    if full >= _BAR_WIDTH:
        return _BLOCKS[-1] * _BAR_WIDTH
    return _BLOCKS[-1] * full + _BLOCKS[part] + " " * (_BAR_WIDTH - full - 1)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def tqdm_line(n: int, total: int, step_s: float) -> str:
    """One redraw, e.g. `` 40%|████      | 20/50 [00:01<00:01, 20.00it/s]``."""
    fraction = n / total
    head = f"{fraction * 100:3.0f}%|{_bar(fraction)}| {n}/{total}"
    if n == 0:
        return f"{head} [00:00<?, ?it/s]"
    step_s = max(step_s, 1e-3)
    rate = f"{1 / step_s:5.2f}it/s" if step_s <= 1 else f"{step_s:5.2f}s/it"
    return f"{head} [{_clock(n * step_s)}<{_clock((total - n) * step_s)}, {rate}]"


def prediction_logs(
    *, seed: int, prompt: str, steps: int, run_s: float, progress: float, error: str | None
) -> str:
    """Logs of a started prediction whose predict() is ``progress`` (0..1) of the way through."""
    one_line_prompt = " ".join(prompt.split())
    head = f"Using seed: {seed}\nPrompt: {one_line_prompt}\ntxt2img mode\n"
    done = math.floor(progress * steps + 1e-9)  # 1e-9: 0.3 * 10 is 2.9999999999999996
    step_s = run_s / steps
    logs = head + "\r".join(tqdm_line(i, steps, step_s) for i in range(done + 1))
    if done >= steps:
        logs += "\n"
    if error is not None:
        logs += f'\nTraceback (most recent call last):\n  File "predict.py", in predict\n{error}\n'
    return logs
