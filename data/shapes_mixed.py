"""Shapes datasets drawn by a mix of renderers, with optional colour noise: training data for a
tokenizer that must hold on renders other than the default one (issue 16, item 5).

``make_mixed_dataset`` samples exactly the scenes, captions and questions of
``make_dataset(num_samples, seed, image_size, num_questions)``, then draws each scene with one renderer:
- ``pixel``: the default renderer (``shapes_render``: hard, pixel-snapped edges);
- ``antialiased``: ``shapes_antialiased.render_batch_antialiased`` (coverage-blended edges, centres
  moved by up to ``jitter`` px; the ``objects`` column of those rows carries the moved centres).
``renderers`` maps renderer names to non-negative weights; the number of scenes per renderer is the
weights' share of ``num_samples`` (largest remainder), and which scenes get which renderer is a
seeded permutation. ``color_noise`` > 0 adds independent Gaussian noise of that standard deviation
(a fraction of the 0-255 range) to every channel of every pixel of every image, rounded and clipped.
Every random draw comes from generators derived from ``seed`` (``numpy.random.default_rng([seed, k])``,
one ``k`` per purpose), so a dataset is a pure function of its arguments.
"""

from __future__ import annotations

import numpy as np

RENDERERS = ("pixel", "antialiased")
MAX_COLOR_NOISE = 0.25


def check_renderers(renderers) -> dict[str, float]:
    """{name: weight} -> the same with float weights; a ValueError naming the bad key or value."""
    if not isinstance(renderers, dict) or not renderers:
        raise ValueError(f"renderers must be a non-empty mapping {{renderer: weight}} with renderers from "
                         f"{RENDERERS}, got {renderers!r}")
    out = {}
    for name, weight in renderers.items():
        if name not in RENDERERS:
            raise ValueError(f"renderers: unknown renderer {name!r}; expected one of {RENDERERS}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ValueError(f"renderers.{name}: weight must be a number >= 0, got {weight!r}")
        out[name] = float(weight)
    if sum(out.values()) <= 0:
        raise ValueError(f"renderers: the weights must not all be 0, got {renderers!r}")
    return out


def renderer_counts(weights: dict[str, float], n: int) -> dict[str, int]:
    """Scenes per renderer: each weight's share of n, rounded by largest remainder (sums to n)."""
    total = sum(weights.values())
    exact = {k: n * w / total for k, w in weights.items()}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    by_remainder = sorted(weights, key=lambda k: (-(exact[k] - counts[k]), RENDERERS.index(k)))
    for k in by_remainder[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def add_color_noise(images: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, H, W, 3] + N(0, (std * 255)^2) per channel and pixel -> uint8 (rounded, clipped)."""
    noisy = images.astype(np.float64) + rng.normal(0.0, std * 255.0, images.shape)  # [N, H, W, 3]
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def make_mixed_dataset(num_samples: int, seed: int = 0, image_size: int = 32, num_questions: int = 3,
                       renderers: dict | None = None, color_noise: float = 0.0, jitter: float = 0.5,
                       supersample: int = 8):
    """A Shapes ``datasets.Dataset`` (columns of ``make_dataset``) drawn by a mix of renderers; see the
    module docstring. ``renderers=None`` means ``{"pixel": 1}``."""
    import datasets

    from .shapes import make_dataset, png_bytes
    from .shapes_antialiased import render_batch_antialiased
    from .shapes_render import render_batch

    weights = check_renderers({"pixel": 1} if renderers is None else renderers)
    if isinstance(color_noise, bool) or not isinstance(color_noise, (int, float)) \
            or not 0.0 <= color_noise <= MAX_COLOR_NOISE:
        raise ValueError(f"color_noise must be a number in [0, {MAX_COLOR_NOISE}] (std as a fraction of 255), "
                         f"got {color_noise!r}")
    if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"supersample must be a positive int, got {supersample!r}")
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be a number in [0, 1] pixels, got {jitter!r}")
    base = make_dataset(num_samples, seed=seed, image_size=image_size, num_questions=num_questions)
    scenes = list(base["objects"])
    n = len(scenes)
    counts = renderer_counts(weights, n)
    order = np.random.default_rng([seed, 1]).permutation(n)  # scene indices, split among the renderers
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)  # [N, S, S, 3]
    lo = 0
    for name in RENDERERS:
        rows = np.sort(order[lo : lo + counts.get(name, 0)])
        lo += len(rows)
        if not len(rows):
            continue
        picked = [scenes[i] for i in rows]
        if name == "pixel":
            images[rows] = render_batch(picked, image_size)
        else:
            aa_seed = int(np.random.default_rng([seed, 2]).integers(2**31))
            images[rows], moved = render_batch_antialiased(picked, image_size, supersample, jitter, aa_seed)
            for i, scene in zip(rows, moved):
                scenes[i] = scene
    if color_noise > 0:
        images = add_color_noise(images, float(color_noise), np.random.default_rng([seed, 3]))
    data = {**base.to_dict(), "image": png_bytes(images), "objects": scenes}
    return datasets.Dataset.from_dict(data, features=base.features)


__all__ = ["RENDERERS", "make_mixed_dataset", "check_renderers", "renderer_counts", "add_color_noise"]
