"""The learning-rate rule both trainers share: `warmup_cosine(step, warmup_steps, total_steps, min_ratio,
time_fraction, stable_fraction)`, a linear warm-up, optionally a stable phase at the peak rate
(warmup-stable-decay), then a cosine; progress follows steps, or the clock of a time budget when that runs out
first (so a run cut by its clock still anneals)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0,
                  time_fraction: float = 0.0, stable_fraction: float = 0.0) -> float:
    """Linear warm-up from 1/warmup to 1 over `warmup_steps`, then cosine from 1 down to `min_ratio`.

    `step` counts optimizer steps already taken (0 for the first update). The schedule's progress after the
    warm-up is the larger of the step fraction and `time_fraction` (the share of a time budget spent, 0
    without one), so a run stopped by its clock still ends at `min_ratio` instead of mid-schedule. The first
    `stable_fraction` of that progress holds the peak rate and the cosine runs over the rest (0: a plain
    cosine).
    """
    if not 0.0 <= stable_fraction < 1.0:
        raise ValueError(f"stable_fraction must be in [0, 1), got {stable_fraction}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, max((step - warmup_steps) / decay_steps, time_fraction))
    progress = max(0.0, progress - stable_fraction) / (1.0 - stable_fraction)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
