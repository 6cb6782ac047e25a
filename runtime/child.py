"""Running a command in a child process as a user would, with stop requests passed on: `run_child`.

The child gets its own session (process group), so a Ctrl-C at the terminal reaches only the parent, which
forwards each SIGTERM/SIGINT it receives to the child exactly once: a trainer child checkpoints and exits 143
on the first, and dies on a second, as it would at a terminal. The child's stdout/stderr are the parent's
(its output streams through as it is written). Returns the child's exit status (negative: killed by that signal).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import Sequence


def run_child(cmd: Sequence[str], env: dict | None = None, cwd: str | os.PathLike | None = None) -> int:
    """Run `cmd` to completion, forwarding SIGTERM/SIGINT to it; returns its exit status."""
    proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, start_new_session=True)
    previous: dict = {}

    def forward(signum, frame) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, forward)
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # the wait itself failed: leave no orphan behind
            proc.kill()
            proc.wait()
