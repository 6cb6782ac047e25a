"""Run configs: YAML files -> plain (nested) dataclasses, one typed loader for every entry point.

Owns `load_run_config(cls, path, overrides)` (`key=value` command-line overrides with dotted keys for nested
dataclasses; unknown keys rejected by name), `from_dict`, `apply_overrides`, `check_config` (type-checks and
coerces every field: "2e-4" in YAML becomes the float the field declares; floats finite) and
`save_run_config` (the resolved config, written atomically beside the run).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .files import atomic_write_text

T = TypeVar("T")


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
