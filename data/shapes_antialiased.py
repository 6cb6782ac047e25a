"""A second Shapes renderer: anti-aliased edges at sub-pixel positions (a rendering the default
renderer, `shapes_render`, never produces). The default renderer is untouched.

Each object's centre is moved by a uniform offset in [-jitter, jitter) pixels on each axis (drawn
from ``numpy.random.default_rng(seed)``, object by object in scene order), then every pixel's colour
is the coverage-weighted blend of the object colour over what is below it, the coverage measured on
``supersample`` x ``supersample`` sub-pixel samples with the same inside rules as the default renderer
(``shapes_render`` module docstring) applied to the sample points and the unrounded centre.
Objects are painted in scene order. Returned scenes carry the moved centres (the ground truth of the
picture), so scene-level scores stay exact with a position tolerance.
"""

from __future__ import annotations

import numpy as np

from .shapes_render import _check_object
from .shapes_world import BACKGROUND, COLORS, check_image_size, object_side


def _inside(shape: str, u: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    """Inside test at sample offsets u [1, W], v [H, 1] from the box centre -> bool [H, W]."""
    box = (np.abs(u) < n / 2.0) & (np.abs(v) < n / 2.0)
    if shape == "square":
        return box
    if shape == "circle":
        return box & (u * u + v * v <= (n / 2.0) ** 2)
    return box & (np.abs(u) <= (v + (n - 1) / 2.0 + 1.0) / 2.0)  # triangle, apex up (default rule)


def render_batch_antialiased(scenes: list[list[dict]], image_size: int = 32, supersample: int = 8,
                             jitter: float = 0.5, seed: int = 0) -> tuple[np.ndarray, list[list[dict]]]:
    """Scenes -> (uint8 [N, S, S, 3], scenes with the moved centres); see the module docstring."""
    s = check_image_size(image_size)
    if not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"supersample must be a positive int, got {supersample!r}")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be in [0, 1] pixels, got {jitter}")
    rng = np.random.default_rng(seed)
    coords = (np.arange(s * supersample) + 0.5) / supersample  # sample positions in pixel units [S*ss]
    out = np.empty((len(scenes), s, s, 3), dtype=np.float64)
    out[:] = np.array(BACKGROUND, dtype=np.float64)
    moved_scenes = []
    for i, scene in enumerate(scenes):
        moved = []
        for obj in scene:
            _check_object(obj, s)  # same validation as the default renderer
            dx, dy = rng.uniform(-jitter, jitter, 2) if jitter > 0 else (0.0, 0.0)
            x, y = float(obj["x"]) + dx, float(obj["y"]) + dy
            n = object_side(obj["size"], s)
            mask = _inside(obj["shape"], (coords - x)[None, :], (coords - y)[:, None], n)  # [S*ss, S*ss]
            cover = mask.reshape(s, supersample, s, supersample).mean((1, 3))[..., None]  # [S, S, 1]
            out[i] = out[i] * (1.0 - cover) + np.array(COLORS[obj["color"]], np.float64) * cover
            moved.append({**obj, "x": x, "y": y})
        moved_scenes.append(moved)
    return np.clip(np.round(out), 0, 255).astype(np.uint8), moved_scenes


def make_antialiased_dataset(num_samples: int, seed: int = 0, image_size: int = 32, supersample: int = 8,
                             jitter: float = 0.5):
    """The Shapes scenes of ``make_dataset(num_samples, seed, image_size)`` drawn by this renderer:
    a ``datasets.Dataset`` with columns image, caption, objects (moved centres)."""
    import datasets

    from .shapes import make_dataset, png_bytes

    base = make_dataset(num_samples, seed=seed, image_size=image_size, num_questions=0)
    images, scenes = render_batch_antialiased(base["objects"], image_size, supersample, jitter, seed)
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string"),
                                  "objects": base.features["objects"]})
    return datasets.Dataset.from_dict({"image": png_bytes(images), "caption": base["caption"], "objects": scenes},
                                      features=features)


__all__ = ["render_batch_antialiased", "make_antialiased_dataset"]
