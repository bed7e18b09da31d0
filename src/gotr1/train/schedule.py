"""The learning-rate schedule of SFT and GRPO: linear warm-up, then constant or a cosine decay to a floor."""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "constant")


def learning_rate(
    step: int,
    *,
    peak: float,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    floor_ratio: float = 0.0,
    spent: float | None = None,
) -> float:
    """The rate for 0-based ``step``.

    Warm-up rises linearly to ``peak`` over ``warmup_steps``; the cosine then falls to ``floor_ratio * peak``
    at ``total_steps``. ``spent`` (a share of a time budget) moves the decay on when the clock runs out
    before the steps do, so a run stopped by time still ends cooled.
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if spent is not None:
        progress = max(progress, spent)
    floor = peak * floor_ratio
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
