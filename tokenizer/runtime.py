"""Run-time plumbing shared by the training entry points (tokenizer here; the LM trainer imports it too).

Owns: YAML run configs -> plain dataclasses (with `key=value` command-line overrides, dotted keys for
nested dataclasses, unknown keys rejected by name; `check_config` type-checks and coerces every field,
floats finite); atomic file and directory writes (a kill at any
moment leaves either the old or the new version, never a torn one); a stop flag set by SIGTERM/SIGINT
so a trainer can checkpoint before exiting, and `agree_max` so all processes act on the same clock and stop
requests, and `dist_sum_` / `dist_cat` so running statistics see the global batch; integrity checks of saved files (`check_safetensors_file`,
`check_torch_file`, `check_json_file`, `check_pretrained_dir`) that turn a truncated or corrupted file into a
`CheckpointError` naming it, instead of a crash deep inside torch/safetensors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import struct
import tempfile
import types
import typing
import zipfile
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


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce_value(value, tp, name: str):
    """Return `value` as type `tp` (int -> float, numeric strings like '2e-4' -> float) or raise TypeError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce_value(value, option, name)
            except TypeError:
                continue
        raise TypeError(f"config key {name!r} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "2e-4" as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):
                raise ValueError(f"config key {name!r} must be a finite number, got {value!r}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is list or tp is list:
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(tp) or (typing.Any,)
            return [v if item is typing.Any else _coerce_value(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            return value
    raise TypeError(f"config key {name!r} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def check_config(config, prefix: str = ""):
    """Type-check (and coerce) every field of a run-config dataclass in place; returns it. A float must be
    finite (nan/inf are never meaningful settings)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, name = getattr(config, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            check_config(value, prefix=name + ".")
            continue
        setattr(config, f.name, _coerce_value(value, hints[f.name], name))
    return config


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


# ----------------------------------------------------------------------------- file integrity
class CheckpointError(ValueError):
    """A saved model/checkpoint file that is missing, truncated or corrupted; the message names the file."""


_SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}
_SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own limit


def check_safetensors_file(path: str | os.PathLike) -> dict:
    """Check a .safetensors file's structure without reading its tensors; return the parsed header.

    Layout: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
    then the data block. Checked: the header length fits the file, the header parses, each tensor's byte
    range matches its dtype x shape, and the data block is exactly as long as the offsets say. Any failure
    raises `CheckpointError` ("<path> is truncated or corrupted: <detail>"). Flipped bits inside tensor
    data cannot be seen (the format has no checksum).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing (expected a safetensors weights file)")

    def bad(detail: str) -> CheckpointError:
        return CheckpointError(f"{path} is truncated or corrupted: {detail}")

    size = path.stat().st_size
    if size < 8:
        raise bad(f"{size} bytes, shorter than the 8-byte header length")
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > _SAFETENSORS_MAX_HEADER or n > size - 8:
            raise bad(f"header length {n} does not fit in a file of {size} bytes")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"the JSON header does not parse ({exc})") from None
    if not isinstance(header, dict):
        raise bad(f"the JSON header is a {type(header).__name__}, not a mapping")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (lo, hi) = info["dtype"], [int(d) for d in info["shape"]], info["data_offsets"]
            lo, hi = int(lo), int(hi)
        except (TypeError, KeyError, ValueError):
            raise bad(f"tensor {name!r} has a malformed header entry {info!r}") from None
        if not 0 <= lo <= hi:
            raise bad(f"tensor {name!r} has invalid data_offsets [{lo}, {hi}]")
        width = _SAFETENSORS_DTYPE_BYTES.get(dtype)
        if width is not None and hi - lo != width * math.prod(shape):
            raise bad(f"tensor {name!r} ({dtype} {shape}) spans {hi - lo} bytes, expected {width * math.prod(shape)}")
        end = max(end, hi)
    data = size - 8 - n
    if data < end:
        raise bad(f"the header describes {end} bytes of tensor data but the file holds only {data} (truncated)")
    if data > end:
        raise bad(f"{data - end} unexpected bytes after the tensor data")
    return header


def check_torch_file(path: str | os.PathLike) -> None:
    """Check that a `torch.save` file (zip container) is complete, without unpickling it.

    The zip central directory sits at the end of the file, so a truncated file loses it; each member's
    byte range must also lie inside the file. Raises `CheckpointError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing (expected a torch.save file)")
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupted: not a complete torch.save archive ({exc})") from None
    if not infos:
        raise CheckpointError(f"{path} is truncated or corrupted: the torch.save archive is empty")
    for info in infos:
        if info.header_offset + info.compress_size > size:
            raise CheckpointError(f"{path} is truncated or corrupted: member {info.filename!r} runs past the end")


def check_json_file(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a missing, unreadable or malformed one raises `CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupted: malformed JSON ({exc})") from None


def check_pretrained_dir(path: str | os.PathLike) -> dict | None:
    """Check a local `save_pretrained` directory before transformers reads it; return its config.json.

    config.json must parse (to a mapping); model.safetensors, or every shard named by
    model.safetensors.index.json, must pass `check_safetensors_file`. A path that is not a local
    directory (e.g. a hub name) is left to transformers and gives None.
    """
    path = Path(os.fspath(path))
    if not path.is_dir():
        return None
    config = None
    if (path / "config.json").is_file():
        config = check_json_file(path / "config.json")
        if not isinstance(config, dict):
            raise CheckpointError(f"{path / 'config.json'} is corrupted: expected a JSON mapping, "
                                  f"got {type(config).__name__}")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        data = check_json_file(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index} is corrupted: it has no 'weight_map' mapping")
        for shard in sorted(set(weight_map.values())):
            check_safetensors_file(path / shard)
    elif (path / "model.safetensors").is_file():
        check_safetensors_file(path / "model.safetensors")
    return config


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


def agree_max(values: list[float], device: Any = "cpu") -> list[float]:
    """The element-wise max of `values` over all processes (one float64 all-reduce; as given with one
    process): how trainers agree on the clock and on stop requests, so every rank stops at the same step."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def _world():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def dist_sum_(tensor):
    """Sum `tensor` over all processes in place (a no-op with one process); returns it. For statistics that
    must equal one process's over the global batch (the EMA codebook's counts and sums)."""
    dist = _world()
    if dist is not None:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def dist_cat(tensor):
    """Concatenate `tensor` [N, ...] (same N on every process) over processes in rank order: [world*N, ...]
    (`tensor` itself with one process). Rank order is the global batch order of `batches_for`."""
    dist = _world()
    if dist is None:
        return tensor
    import torch

    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


__all__ = [
    "agree_max",
    "dist_sum_",
    "dist_cat",
    "from_dict",
    "apply_overrides",
    "load_run_config",
    "save_run_config",
    "check_config",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_directory",
    "recover_directory",
    "CheckpointError",
    "check_safetensors_file",
    "check_torch_file",
    "check_json_file",
    "check_pretrained_dir",
    "StopFlag",
]
