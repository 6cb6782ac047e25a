"""The end of a training run, shared by both trainers: `finalize()` writes OUTPUT/final, and `write_summary()`
the run's summary for a caller that started the trainer as a command (`--summary FILE`).

`finalize(output_dir, write, config)`: the main process fills a temporary sibling of OUTPUT/final with
`write(tmp)` (weights, processor files), adds the resolved run config as `train_config.yaml`, and the
directory replaces OUTPUT/final atomically (`files.atomic_directory`: a kill leaves the old or the new
version, and `files.recover_directory` repairs a swap cut between its renames). Other processes only wait.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from .config import save_run_config
from .files import atomic_directory, atomic_write_text

FINAL_NAME = "final"
CONFIG_NAME = "train_config.yaml"


def finalize(output_dir: str | os.PathLike, write: Callable[[Path], None], config: Any = None, *,
             is_main: bool = True, wait: Callable[[], None] | None = None) -> Path:
    """Write OUTPUT/final atomically (main process: `write(tmp)`, then `config` as train_config.yaml); every
    process then calls `wait` (a barrier) when given. Returns OUTPUT/final."""
    final = Path(output_dir) / FINAL_NAME
    if is_main:
        with atomic_directory(final) as tmp:
            write(tmp)
            if config is not None:
                save_run_config(config, tmp / CONFIG_NAME)
    if wait is not None:
        wait()
    return final


def _plain(value: Any) -> Any:
    """JSON-safe: paths as strings, non-finite floats as None, containers recursively."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_summary(path: str | os.PathLike | None, record: dict) -> None:
    """Write `record` (a run's result) as JSON to `path`, atomically; nothing when `path` is None."""
    if path is not None:
        atomic_write_text(path, json.dumps(_plain(record), indent=1))
