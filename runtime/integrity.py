"""Integrity checks of saved files: a truncated or corrupted file becomes a `CheckpointError` naming it.

Owns `CheckpointError`, `check_safetensors_file` (header and sizes, without loading), `check_torch_file`
(zip structure; loads stay `weights_only=True`), `check_json_file` and `check_pretrained_dir` (a
`save_pretrained` directory: config.json readable, weights complete).
"""

from __future__ import annotations

import json
import math
import os
import struct
import zipfile
from pathlib import Path
from typing import Any


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
