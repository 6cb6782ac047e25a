"""What the training commands share at their boundary: exit statuses and one-line error reports.

`run_command(prog, load, run)`: `load()` reads and checks the run config; `run(config)` trains and returns an
exit status. A bad config is one line `PROG: config error: ...` and status 2 (before anything heavy);
during the run, a damaged checkpoint is `PROG: checkpoint error: ...` and status 1, other bad input (data
specs, model directories, the run lock, resume rules) `PROG: error: ...` and status 2. No traceback for
any of these; anything else is a bug and keeps its traceback.

Statuses: `EXIT_OK` 0 (finished: max_steps, the time budget, or stop_at_step), `EXIT_CHECKPOINT` 1,
`EXIT_USAGE` 2, `EXIT_SIGNAL` 143 (= 128 + SIGTERM: a stop request saved a checkpoint, resume to continue).
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from .integrity import CheckpointError

EXIT_OK, EXIT_CHECKPOINT, EXIT_USAGE, EXIT_SIGNAL = 0, 1, 2, 128 + 15
INPUT_ERRORS = (ValueError, TypeError, FileNotFoundError)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (YAML parser messages span several)."""
    return " ".join(str(exc).split())


def exit_status(stopped_by_signal: bool) -> int:
    return EXIT_SIGNAL if stopped_by_signal else EXIT_OK


def run_command(prog: str, load: Callable[[], Any], run: Callable[[Any], int]) -> int:
    """Load the config, then run; config and input errors become one stderr line and their exit status."""
    try:
        config = load()
    except INPUT_ERRORS as exc:
        print(f"{prog}: config error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(run(config))
    except CheckpointError as exc:  # before INPUT_ERRORS: it is a ValueError
        print(f"{prog}: checkpoint error: {one_line(exc)}", file=sys.stderr)
        return EXIT_CHECKPOINT
    except INPUT_ERRORS as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
