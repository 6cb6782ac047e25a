"""One writer per run directory: `run_lock(directory, command)` (a context manager) and `RunLocked`.

Both trainers, `extract-codes` and the demo hold it on their output directory for the whole run, so a
second run started into the same directory fails at once with a one-line error naming the owner,
instead of interleaving logs and overwriting checkpoints.

The lock is the file DIR/.gaussiantoken.lock holding JSON {pid, host, command, started}, held with an
exclusive `fcntl.flock` for as long as the owner lives. The kernel drops a flock when its process dies
(also on SIGKILL), so a lock file left behind by a dead owner is stale: the next run takes it over and
says so. The pid/host in the file are for the message (and for humans); the flock decides. On file
systems without flock support the lock degrades to the pid/host record: a record naming a live
process on this host (or any process on another host) blocks; one naming a dead local pid is stale.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".gaussiantoken.lock"


class RunLocked(ValueError):
    """Another live process holds the run directory; the message names it (pid, host, command)."""


def _read_owner(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError, OverflowError):
        return True  # exists but not ours, or unreadable record: assume alive
    return True


def _describe(owner: dict) -> str:
    if not owner:
        return "another process (its lock record is unreadable)"
    started = owner.get("started")
    since = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else ""
    return f"pid {owner.get('pid')} on host {owner.get('host')!r} ({owner.get('command', '?')}{since})"


class _Lock:
    def __init__(self, directory: Path, command: str):
        self.directory, self.command = Path(directory), command
        self.path = self.directory / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "_Lock":
        import fcntl

        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(20):  # retry when the file was replaced/removed between open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLocked(f"{self.directory} is in use by {_describe(_read_owner(self.path))}: one run "
                                f"directory has one writer; wait for it, stop it, or choose another output "
                                f"directory") from None
            except OSError:  # no flock on this file system: fall back to the pid/host record
                os.close(fd)
                return self._acquire_by_record()
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = _read_owner(self.path)
            if previous and previous.get("pid") is not None:
                print(f"{self.command}: taking over the stale lock of {self.directory} left by "
                      f"{_describe(previous)}, which is no longer running", file=sys.stderr)
            self.fd = fd
            self._write_record(fd)
            return self
        raise RunLocked(f"{self.directory}: could not take the run lock {self.path} (it keeps being replaced)")

    def _record(self) -> bytes:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                           "started": time.time()}).encode()

    def _write_record(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, self._record(), 0)
        os.fsync(fd)

    def _acquire_by_record(self) -> "_Lock":
        owner = _read_owner(self.path)
        host = socket.gethostname()
        if owner.get("pid") is not None and not (owner.get("host") == host and not _pid_alive(owner["pid"])):
            if not (owner.get("host") == host and int(owner["pid"]) == os.getpid()):
                raise RunLocked(f"{self.directory} is in use by {_describe(owner)} (lock file {self.path}; delete "
                                f"it if that process is gone)")
        tmp = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.tmp")
        tmp.write_bytes(self._record())
        os.replace(tmp, self.path)
        return self

    def release(self) -> None:
        try:
            if _read_owner(self.path).get("pid") == os.getpid():
                self.path.unlink()  # before the flock goes: a waiter then re-checks the inode and retries
        except OSError:
            pass
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@contextmanager
def run_lock(directory: str | os.PathLike, command: str, enabled: bool = True):
    """Hold the run lock of `directory` (created if needed) for the block; `RunLocked` if another live
    process holds it. `enabled=False` (the non-main processes of a multi-process run) does nothing."""
    if not enabled:
        yield None
        return
    lock = _Lock(Path(directory), command).acquire()
    try:
        yield lock
    finally:
        lock.release()


__all__ = ["LOCK_NAME", "RunLocked", "run_lock"]
