"""Run-time plumbing shared by the training entry points (tokenizer here; the LM trainer imports it too).

Owns: YAML run configs -> plain dataclasses (with `key=value` command-line overrides, dotted keys for
nested dataclasses, unknown keys rejected by name); atomic file and directory writes (a kill at any
moment leaves either the old or the new version, never a torn one); a stop flag set by SIGTERM/SIGINT
so a trainer can checkpoint before exiting.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


# ----------------------------------------------------------------------------- run configs
def _coerce(value: Any, field_type: Any, name: str) -> Any:
    """Convert a YAML value (or override string parsed by YAML) to the field's declared type."""
    if dataclasses.is_dataclass(field_type) and isinstance(field_type, type):
        if not isinstance(value, dict):
            raise ValueError(f"config key {name!r} must be a mapping, got {type(value).__name__}")
        return from_dict(field_type, value, prefix=f"{name}.")
    return value


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass `cls` from a (nested) dict; unknown keys raise a ValueError naming them."""
    if not isinstance(data, dict):
        raise ValueError(f"config must be a mapping at {prefix or 'top level'}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown config key(s) {[prefix + k for k in unknown]}; known: {sorted(fields)}")
    hints = _type_hints(cls)
    kwargs = {k: _coerce(v, hints.get(k), prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def _type_hints(cls) -> dict:
    import typing

    try:
        return typing.get_type_hints(cls)
    except Exception:  # forward references we cannot resolve: fall back to raw annotations
        return {f.name: f.type for f in dataclasses.fields(cls)}


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b=value` strings to a nested dict; values are parsed with yaml.safe_load."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        if not key:
            raise ValueError(f"override {item!r} has an empty key")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
    return data


def load_run_config(cls: type[T], path: str | os.PathLike | None, overrides: list[str] | None = None) -> T:
    """Read a YAML file (or nothing) into dataclass `cls`, then apply command-line overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path) as fh:
            try:
                data = yaml.safe_load(fh) or {}
            except yaml.YAMLError as exc:
                raise ValueError(f"malformed YAML in {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"config {path} must contain a mapping at top level, got {type(data).__name__}")
    return from_dict(cls, apply_overrides(data, overrides or []))


def save_run_config(config: Any, path: str | os.PathLike) -> None:
    """Write a dataclass config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))


# ----------------------------------------------------------------------------- atomic writes
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_directory(final: str | os.PathLike):
    """Yield a temporary directory; on success it replaces `final` atomically (old version removed).

    A crash inside the block leaves `final` untouched (and a `.tmp-*` sibling that the next call
    cleans). A crash between the two renames leaves `final.old-*`, which `recover_directory` restores.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    recover_directory(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        for root, _, files in os.walk(tmp):
            for name in files:
                with open(os.path.join(root, name), "rb") as fh:
                    os.fsync(fh.fileno())
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover_directory(final: str | os.PathLike) -> None:
    """If a previous atomic_directory died between its renames, put the old version back."""
    final = Path(final)
    olds = sorted(final.parent.glob(f".{final.name}.old-*"))
    if olds and not final.exists():
        os.replace(olds[-1], final)
        olds = olds[:-1]
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- stop requests
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


__all__ = [
    "from_dict",
    "apply_overrides",
    "load_run_config",
    "save_run_config",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_directory",
    "recover_directory",
    "StopFlag",
]
