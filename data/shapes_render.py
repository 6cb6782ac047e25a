"""Rendering Shapes scenes to pixels: exact palette colours, no anti-aliasing, vectorized with numpy.

Pixel (row i, column j) is inside an object whose n x n bounding box is centred at (x, y) when,
with u = j + 0.5 - x and v = i + 0.5 - y (offsets of the pixel centre):
- square:   |u| < n/2 and |v| < n/2 (the whole box);
- circle:   inside the box and u^2 + v^2 <= (n/2)^2;
- triangle: inside the box and |u| <= (r + 1)/2 with r = v + (n - 1)/2 the row inside the box
            (apex at the top, base = the bottom row of the box: upright and isosceles).
Every shape fills its bounding box's full extent, so the box (and the centre) is recoverable.
The box's top-left pixel is (x - n/2, y - n/2), rounded to the pixel grid.
"""

from __future__ import annotations

import math

import numpy as np

from .shapes_world import BACKGROUND, COLORS, SHAPES, check_image_size, object_side

_SHAPE_ID = {name: i for i, name in enumerate(SHAPES)}
_COLOR_ID = {name: i for i, name in enumerate(COLORS)}


def stamp(shape: str, n: int) -> np.ndarray:
    """Boolean mask [n, n] of a shape filling an n x n bounding box (rules in the module docstring)."""
    c = np.arange(n, dtype=np.float64) + 0.5 - n / 2.0  # pixel-centre offsets from the box centre
    u, v = c[None, :], c[:, None]  # [1, n], [n, 1]
    if shape == "square":
        return np.ones((n, n), dtype=bool)
    if shape == "circle":
        return u * u + v * v <= (n / 2.0) ** 2
    if shape == "triangle":
        return np.abs(u) <= (v + (n - 1) / 2.0 + 1.0) / 2.0
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def _check_object(obj: dict, image_size: int) -> tuple[int, int, int, int, int]:
    """-> (shape id, color id, left, top, side); left/top = x - n/2, y - n/2 rounded to the grid."""
    if not isinstance(obj, dict):
        raise TypeError(f"each object must be a dict, got {type(obj).__name__}")
    for key in ("shape", "color", "size", "x", "y"):
        if key not in obj:
            raise ValueError(f"object {obj!r} is missing key {key!r}")
    if obj["shape"] not in _SHAPE_ID:
        raise ValueError(f"object shape must be one of {SHAPES}, got {obj['shape']!r}")
    if obj["color"] not in _COLOR_ID:
        raise ValueError(f"object color must be one of {tuple(COLORS)}, got {obj['color']!r}")
    n = object_side(obj["size"], image_size)
    left = math.floor(float(obj["x"]) - n / 2.0 + 0.5)
    top = math.floor(float(obj["y"]) - n / 2.0 + 0.5)
    return _SHAPE_ID[obj["shape"]], _COLOR_ID[obj["color"]], left, top, n


def render_batch(scenes: list[list[dict]], image_size: int = 32) -> np.ndarray:
    """Render many scenes at once -> uint8 array [N, S, S, 3].

    Each (shape, size) has one precomputed stamp; all objects of that kind are pasted with one
    fancy-indexed assignment (pixels falling outside the canvas are dropped).
    """
    s = check_image_size(image_size)
    palette = np.array(list(COLORS.values()), dtype=np.uint8)  # [7, 3]
    out = np.empty((len(scenes), s, s, 3), dtype=np.uint8)
    out[:] = np.array(BACKGROUND, dtype=np.uint8)
    rows = [(i, *_check_object(o, s)) for i, scene in enumerate(scenes) for o in scene]
    if not rows:
        return out
    flat = out.reshape(-1, 3)  # [N*S*S, 3] view
    params = np.array(rows, dtype=np.int64)  # [K, 6]: image, shape, color, left, top, side
    for shape_id, shape in enumerate(SHAPES):
        for n in np.unique(params[:, 5]):
            sel = params[(params[:, 1] == shape_id) & (params[:, 5] == n)]  # [k, 6]
            if not len(sel):
                continue
            dr, dc = np.nonzero(stamp(shape, int(n)))  # [P] offsets inside the box
            r = sel[:, 4:5] + dr[None, :]  # [k, P]
            c = sel[:, 3:4] + dc[None, :]  # [k, P]
            inside = (r >= 0) & (r < s) & (c >= 0) & (c < s)  # [k, P]
            flat_idx = (sel[:, 0:1] * s + r) * s + c  # [k, P] index into the [N*S*S] pixels
            color = np.broadcast_to(sel[:, 2:3], r.shape)  # [k, P]
            flat[flat_idx[inside]] = palette[color[inside]]
    return out


def render_array(objects: list[dict], image_size: int = 32) -> np.ndarray:
    """One scene -> uint8 array [S, S, 3]."""
    if not isinstance(objects, (list, tuple)):
        raise TypeError(f"objects must be a list of dicts, got {type(objects).__name__}")
    return render_batch([list(objects)], image_size)[0]


def render_scene(objects: list[dict], image_size: int = 32):
    """One scene -> PIL.Image (RGB, S x S), exact palette colours."""
    from PIL import Image

    return Image.fromarray(render_array(objects, image_size), mode="RGB")
