"""Evaluation reports: metrics.json (flat dotted keys, written atomically), report.md, image grids, plots.

Owns:
- `flatten_metrics(nested)`: {"reconstruction": {"psnr": 31.2}} -> {"reconstruction.psnr": 31.2};
  tensors / numpy scalars become Python numbers, non-finite floats become the strings "nan"/"inf"/"-inf"
  (metrics.json stays strict JSON).
- `write_json_atomic(path, obj)`: write to a temporary file in the same folder, fsync, os.replace.
- `save_image_grid(images, path, nrow, captions=None)`: a PNG grid (PIL) with optional captions.
- `save_plot(path, x, series, ...)`: a line plot through matplotlib's Agg canvas (no pyplot, no global
  backend switch).
- `write_report(out_dir, metrics, sections=(), failed=None)`: writes metrics.json and report.md. Metrics of
  a task listed in `failed` are never written as results: they are dropped, metrics.json carries
  "status": "incomplete" and "failed.<task>": "<reason>", and report.md says which task failed and why.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np


def _plain(value: Any) -> Any:
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return [_plain(v) for v in value.reshape(-1).tolist()] if value.ndim == 1 else value.tolist()
        value = value.reshape(()).item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"metric value of type {type(value).__name__} cannot be written to JSON")


def flatten_metrics(metrics: dict, prefix: str = "") -> dict:
    """Nested dict -> flat {"a.b.c": value}; keys must be non-empty strings without '.' clashes."""
    if not isinstance(metrics, dict):
        raise TypeError(f"metrics must be a dict, got {type(metrics).__name__}")
    flat: dict = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric keys must be non-empty strings, got {key!r} under {prefix or 'the top level'!r}")
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, name))
        else:
            if name in flat:
                raise ValueError(f"metric key {name!r} appears twice after flattening")
            flat[name] = _plain(value)
    return flat


def write_json_atomic(path, obj: Any) -> None:
    """Write obj as JSON to path so that readers see either the old file or the complete new one."""
    from gaussiantoken.runtime.files import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def _to_uint8_hwc(img, value_range: tuple[float, float]) -> np.ndarray:
    if hasattr(img, "convert"):  # PIL
        return np.asarray(img.convert("RGB"))
    arr = img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"each image must be [C, H, W] or [H, W, C], got shape {arr.shape}")
    if arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)  # CHW -> HWC
    if arr.dtype != np.uint8:
        lo, hi = value_range
        arr = np.clip((arr.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)
        arr = np.round(arr * 255.0).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def save_image_grid(images, path, nrow: int = 8, captions: Sequence[str] | None = None,
                    value_range: tuple[float, float] = (0.0, 1.0), min_tile: int = 128, pad: int = 2) -> str:
    """Save images as a PNG grid with `nrow` images per row; returns the path.

    images: a [N, C, H, W] tensor/array (floats in `value_range`, or uint8) or a list of PIL images /
    arrays. Small images are upscaled (nearest) to at least `min_tile` pixels wide; captions, if given
    (one per image), are wrapped under each tile.
    """
    from PIL import Image, ImageDraw, ImageFont

    tiles = [_to_uint8_hwc(im, value_range) for im in images]
    if not tiles:
        raise ValueError("save_image_grid needs at least one image")
    if captions is not None and len(captions) != len(tiles):
        raise ValueError(f"got {len(captions)} captions for {len(tiles)} images")
    if nrow <= 0:
        raise ValueError(f"nrow must be positive, got {nrow}")
    h, w = tiles[0].shape[:2]
    if any(t.shape[:2] != (h, w) for t in tiles):
        raise ValueError("all images in a grid must have the same size")
    scale = max(1, math.ceil(min_tile / w))
    tw, th = w * scale, h * scale
    font = ImageFont.load_default()
    char_w = max(1, int(font.getlength("x")))
    line_h = int(sum(font.getmetrics())) + 1
    wrapped = [textwrap.wrap(c, max(4, tw // char_w)) or [""] for c in captions] if captions else None
    cap_h = (max(len(lines) for lines in wrapped) * line_h + 2) if wrapped else 0
    ncol = min(nrow, len(tiles))
    nrows = math.ceil(len(tiles) / ncol)
    grid = Image.new("RGB", (ncol * (tw + pad) + pad, nrows * (th + cap_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncol)
        x, y = pad + c * (tw + pad), pad + r * (th + cap_h + pad)
        grid.paste(Image.fromarray(tile).resize((tw, th), Image.NEAREST), (x, y))
        if wrapped:
            for j, line in enumerate(wrapped[i]):
                draw.text((x, y + th + 1 + j * line_h), line, fill=(0, 0, 0), font=font)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    grid.save(path, format="PNG")
    return path


def save_plot(path, x: Sequence[float], series: dict, xlabel: str = "", ylabel: str = "", title: str = "") -> str:
    """Line plot of series {label: ys} against x as a PNG (matplotlib Agg canvas); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not series:
        raise ValueError("save_plot needs at least one series")
    fig = Figure(figsize=(5, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, ys in series.items():
        if len(ys) != len(x):
            raise ValueError(f"series {label!r} has {len(ys)} values for {len(x)} x positions")
        ax.plot(list(x), list(ys), marker="o", label=str(label))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png")
    return path


@dataclass
class ReportSection:
    """A report.md section: a title, free markdown text, and images (paths relative to out_dir or absolute)."""

    title: str
    text: str = ""
    images: list = field(default_factory=list)  # [path] or [(path, caption)]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_report(out_dir, metrics: dict, sections: Sequence[ReportSection] = (), failed: dict | None = None,
                 title: str = "GaussianToken evaluation report", config: dict | None = None) -> dict:
    """Write out_dir/metrics.json (flat dotted keys, atomic) and out_dir/report.md; return the flat dict.

    metrics: nested {task: {metric: value}}. failed: {task: reason} for tasks that did not finish; their
    metrics (if any) are dropped, "status" is "incomplete" and "failed.<task>" holds the reason.
    config: optional run settings recorded under "config." keys.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    failed = dict(failed or {})
    kept = {k: v for k, v in metrics.items() if k not in failed}
    flat = flatten_metrics(kept)
    for key in ("status", "failed"):
        if key in flat or any(k.startswith(key + ".") for k in flat):
            raise ValueError(f"metric name {key!r} is reserved for the report status")
    record: dict = {"status": "incomplete" if failed else "complete"}
    record.update({f"failed.{task}": str(reason) for task, reason in failed.items()})
    record.update(flat)
    if config:
        record.update(flatten_metrics(config, "config"))

    lines = [f"# {title}", ""]
    if failed:
        lines += ["**Status: INCOMPLETE.** These tasks failed; their numbers are not reported:", ""]
        lines += [f"- `{task}`: {_fmt(reason)}" for task, reason in failed.items()] + [""]
    else:
        lines += ["**Status: complete.**", ""]
    for task, values in kept.items():
        lines += [f"## {task}", ""]
        rows = flatten_metrics(values) if isinstance(values, dict) else {task: _plain(values)}
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in rows.items()] + [""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [section.text.rstrip(), ""]
        for item in section.images:
            img_path, caption = item if isinstance(item, (tuple, list)) else (item, "")
            rel = os.path.relpath(os.path.abspath(img_path if os.path.isabs(img_path) else os.path.join(out_dir, img_path)),
                                  out_dir)
            if not os.path.isfile(os.path.join(out_dir, rel)):
                raise FileNotFoundError(f"report image not found: {os.path.join(out_dir, rel)}")
            lines += [f"![{caption or os.path.basename(rel)}]({rel.replace(os.sep, '/')})", ""]
            if caption:
                lines += [f"*{caption}*", ""]
    if config:
        lines += ["## Configuration", "", "```json", json.dumps(_plain_tree(config), indent=2), "```", ""]

    write_json_atomic(os.path.join(out_dir, "metrics.json"), record)
    tmp = os.path.join(out_dir, ".report.md.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    os.replace(tmp, os.path.join(out_dir, "report.md"))
    return record


def _plain_tree(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain_tree(v) for k, v in obj.items()}
    return _plain(obj)
