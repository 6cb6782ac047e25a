"""Stop requests: `StopFlag`, set by SIGTERM/SIGINT, polled by trainers between steps (checkpoint, then exit 143)."""

from __future__ import annotations

import signal
from typing import Any


class StopFlag:
    """Set by SIGTERM/SIGINT; trainers poll `.requested` between steps, checkpoint, then exit."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second signal: restore default behaviour and re-raise
            self.restore()
            signal.raise_signal(signum)
            return
        self.requested, self.signum = True, signum

    def install(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
