"""The Shapes scene parser: image -> objects ({shape, color, size, x, y}), exact on clean renders.

Steps (robust to colours slightly off, noise and blurred edges of reconstructed/generated images):
1. snap every pixel to a palette colour (``snap_colors``): read it as a mix of one colour and the
   background, keep it when at least half covered and within ``max_color_distance`` (RGB
   Euclidean, 0-255 scale) of that mix, else it counts as background;
2. 4-connected components per colour (vectorized min-label propagation in numpy);
3. drop components smaller than ``min_area_fraction`` of a small object's box (noise);
4. shape from the component's pixels in its bounding box (``classify_shape``): the top third
   much emptier than the bottom third -> triangle; else the box corners (outside the inscribed
   ellipse) mostly filled -> square (a circle leaves them empty), else circle;
5. size from the box extent max(h, w) against the midpoint of the small and large sides;
6. centre = box centre (pixel j covers [j, j + 1)); objects returned in the canonical order.
"""

from __future__ import annotations

import numpy as np

from .shapes_world import BACKGROUND, COLORS, canonical_order, object_side

_PALETTE = np.array([BACKGROUND, *COLORS.values()], dtype=np.float32)  # [8, 3]; 0 = background
_NAMES = (None, *COLORS)


def to_uint8_image(image) -> np.ndarray:
    """PIL image, numpy [H, W, 3] uint8, or torch tensor [3, H, W] in [-1, 1] -> uint8 [H, W, 3]."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image
        arr = np.asarray(image.convert("RGB"))
    elif type(image).__module__.startswith("torch"):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image tensor must be [3, H, W] in [-1, 1], got shape {tuple(image.shape)}")
        t = (image.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5
        arr = t.round().to(dtype=__import__("torch").uint8).permute(1, 2, 0).numpy()
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image array must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        arr = image
    else:
        raise TypeError(f"image must be a PIL image, a uint8 numpy array or a torch tensor, got {type(image).__name__}")
    if arr.shape[0] != arr.shape[1]:
        raise ValueError(f"image must be square, got {arr.shape[0]}x{arr.shape[1]}")
    return np.ascontiguousarray(arr)


def snap_colors(arr: np.ndarray, max_color_distance: float = 60.0) -> np.ndarray:
    """uint8 [H, W, 3] -> colour index [H, W] (0 = background / unassigned, 1..7 = COLORS order).

    A pixel p is read as a mix a * c + (1 - a) * background of one palette colour c (an edge
    blurred against the background is such a mix): a = the projection of p - background on
    c - background. Colour c is a candidate when a >= 0.5 (at least half covered, the boundary
    of a blurred shape stays where it was) and a <= 1.5, with distance = |p - (background +
    a (c - background))| (at a > 1 the distance to c itself); the nearest candidate within
    ``max_color_distance`` wins.
    """
    bg = _PALETTE[0]
    d = _PALETTE[1:] - bg  # [7, 3]
    p = arr.astype(np.float32) - bg  # [H, W, 3]
    dd = (d * d).sum(-1)  # [7]
    pd = p @ d.T  # [H, W, 7]
    a = pd / dd  # [H, W, 7]
    ac = np.minimum(a, 1.0)
    dist2 = (p * p).sum(-1, keepdims=True) - 2.0 * ac * pd + ac * ac * dd  # [H, W, 7] = |p - ac d|^2
    dist2[(a < 0.5) | (a > 1.5)] = np.inf
    best = dist2.argmin(-1)  # [H, W]
    ok = np.take_along_axis(dist2, best[..., None], -1)[..., 0] <= max_color_distance ** 2
    return np.where(ok, best + 1, 0)


def connected_components(color_idx: np.ndarray) -> np.ndarray:
    """4-connected components of equal non-zero colour index -> labels [H, W] (0 = none).

    Each pixel starts with its own flat index + 1 as label; labels shrink to the component
    minimum by neighbour minima plus pointer jumping (a label names a pixel of the component).
    """
    h, w = color_idx.shape
    fg = color_idx > 0
    big = h * w + 1
    labels = np.where(fg, np.arange(1, h * w + 1).reshape(h, w), big)  # [H, W]
    same_down = fg[:-1] & (color_idx[:-1] == color_idx[1:])  # [H-1, W] joins (i, j)-(i+1, j)
    same_right = fg[:, :-1] & (color_idx[:, :-1] == color_idx[:, 1:])  # [H, W-1]
    while True:
        new = labels.copy()
        np.minimum(new[1:], np.where(same_down, labels[:-1], big), out=new[1:])
        np.minimum(new[:-1], np.where(same_down, labels[1:], big), out=new[:-1])
        np.minimum(new[:, 1:], np.where(same_right, labels[:, :-1], big), out=new[:, 1:])
        np.minimum(new[:, :-1], np.where(same_right, labels[:, 1:], big), out=new[:, :-1])
        new[fg] = new.ravel()[new[fg] - 1]  # pointer jumping: a label is a pixel of the same component
        if np.array_equal(new, labels):
            break
        labels = new
    return np.where(fg, labels, 0)


def classify_shape(mask: np.ndarray) -> str:
    """Shape of one component given its boolean mask cropped to its bounding box [h, w].

    Triangle: the top third of the box holds < 0.6 x the pixels of the bottom third (an upright
    triangle about 0.2, circle and square 1). Otherwise square when the box corners - the pixels
    outside the ellipse inscribed in the box - are at least half filled (square 1, circle 0).
    """
    h, w = mask.shape
    v = (np.arange(h) + 0.5 - h / 2.0)[:, None] / (h / 2.0)  # [h, 1] in (-1, 1)
    u = (np.arange(w) + 0.5 - w / 2.0)[None, :] / (w / 2.0)  # [1, w]
    rows = mask.sum(1)  # [h]
    top, bottom = rows[v[:, 0] < -1 / 3].sum(), rows[v[:, 0] > 1 / 3].sum()
    if top < 0.6 * max(bottom, 1):
        return "triangle"
    corners = (u * u + v * v) > 1.0  # [h, w]
    corner_fill = mask[corners].mean() if corners.any() else mask.mean()
    return "square" if corner_fill >= 0.5 else "circle"


def parse_scene(image, max_color_distance: float = 60.0, min_area_fraction: float = 0.2) -> list[dict]:
    """Recover the objects of a Shapes image (canonical order); see the module docstring."""
    arr = to_uint8_image(image)
    s = arr.shape[0]
    small, large = object_side("small", s), object_side("large", s)
    color_idx = snap_colors(arr, max_color_distance)  # [S, S]
    labels = connected_components(color_idx)  # [S, S]
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    objects = []
    for lab, count in zip(ids, counts):
        if count < max(4.0, min_area_fraction * small * small):
            continue
        ys, xs = np.nonzero(labels == lab)
        top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
        crop = labels[top:bottom + 1, left:right + 1] == lab
        extent = max(bottom - top + 1, right - left + 1)
        objects.append({
            "shape": classify_shape(crop),
            "color": _NAMES[int(color_idx[ys[0], xs[0]])],
            "size": "large" if extent >= (small + large) / 2.0 else "small",
            "x": float(left + right + 1) / 2.0,
            "y": float(top + bottom + 1) / 2.0,
        })
    return canonical_order(objects)
