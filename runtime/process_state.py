"""Process-wide state a training run changes, put back when the run ends, so that each trainer leaves its
process as it found it (another run in the same process, or a child process started later, inherits nothing).

Owns `RUN_ENV` (the single-process torch.distributed rendezvous variables and accelerate's DeepSpeed switch)
and `restored_process_state()`: a context manager that saves those variables and torch's intra-op thread count,
and on exit restores them and resets accelerate's shared (process-wide singleton) states, when accelerate was
imported at all. (DeepSpeed's start-up sets the thread count from OMP_NUM_THREADS, all cores when unset, so a
run started at one thread would otherwise leave its process at all cores.)
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

RUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_DEEPSPEED")


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide `AcceleratorState` / `GradientState` (the next Accelerator starts clean)."""
    if "accelerate.state" not in sys.modules:
        return
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@contextmanager
def restored_process_state(keys: tuple[str, ...] = RUN_ENV):
    """Run the block; then put back the environment variables `keys` and torch's thread count, and reset
    accelerate's shared states."""
    saved = {k: os.environ.get(k) for k in keys}
    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    try:
        yield
    finally:
        if threads is not None:
            sys.modules["torch"].set_num_threads(threads)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_accelerate_state()
