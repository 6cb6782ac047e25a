"""The run clock both trainers keep: `RunClock`, the seconds a run has spent over all its processes.

A run's time is `offset_s` (what its earlier processes spent, restored from the checkpoint) plus this process's
monotonic time since `start`. `agree(stop_requested, device)` takes the max of (stop request, seconds) over all
processes (one all-reduce, `dist.agree_max`), so every rank sees the same clock, makes the same stop decision
and computes the same learning rate. `fraction(budget_s)` is the share of a time budget spent (what the cosine
schedule follows, `schedule.warmup_cosine`).
"""

from __future__ import annotations

import time
from typing import Any

from .dist import agree_max


class RunClock:
    """Seconds spent by a run: `offset_s` from earlier processes + this process's time since `start`."""

    def __init__(self, offset_s: float = 0.0, start: float | None = None) -> None:
        self.start = time.monotonic() if start is None else float(start)
        self.offset_s = float(offset_s)
        self.elapsed_s = self.offset_s  # the agreed value (set by `agree`), what decisions use

    def resume(self, offset_s: float) -> None:
        """Continue the clock of a checkpointed run that had spent `offset_s` seconds."""
        self.offset_s = self.elapsed_s = float(offset_s)

    def restart(self) -> None:
        """This process's part of the clock starts now (e.g. when training begins after loading)."""
        self.start = time.monotonic()

    def local_s(self) -> float:
        """This process's reading (not agreed with the others)."""
        return self.offset_s + time.monotonic() - self.start

    def agree(self, stop_requested: bool, device: Any = "cpu") -> bool:
        """Agree on the clock and on a stop request over all processes; returns whether any process asked to stop."""
        requested, self.elapsed_s = agree_max([float(stop_requested), self.local_s()], device)
        return requested > 0

    def fraction(self, budget_s: float | None) -> float:
        """The share of `budget_s` spent (0 without a budget)."""
        return self.elapsed_s / budget_s if budget_s else 0.0

    def over(self, budget_s: float | None) -> bool:
        return budget_s is not None and self.elapsed_s > budget_s
